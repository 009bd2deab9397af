"""The LightningModule: one G-OPD step, orchestrated.

    rollout -> verify (R) -> score (s, q, r) -> advantages -> loss -> update -> sync

Every stage is a call into its own module; this file only wires them and times them. Each
step returns a ``StepRecord``; the callbacks (``gopd.callbacks``) count, log, evaluate and
checkpoint. Optimization is manual so that the step reads top to bottom and a non-finite step
can be skipped before it touches the weights.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import lightning as L
import torch

from gopd import distributed, strategy
from gopd.callbacks import NonFiniteError, StepRecord
from gopd.evaluate import greedy_accuracy, scorer_accuracy
from gopd.perf import StageClock
from gopd.rewards import Verification
from gopd.rollout import RolloutBatch, decode
from gopd.traces import Tracer
from gopd.responses import SEARCH_EXTRACT, length_metrics, search_metrics

log = logging.getLogger("gopd")

__all__ = ["GOPDModule", "NonFiniteError"]


class GOPDModule(L.LightningModule):
    """Built by ``gopd.run`` from the parts the config chose; it holds no config of its own beyond
    the ``optim`` section, the step budget and the evaluation settings (their answer column is the
    rollouts' too)."""

    def __init__(self, *, student, tokenizer, rollout, estimator, teacher, ema, student_prompts,
                 eval_rows: Sequence[Mapping], stream, optim, max_steps: int, evaluation: Mapping,
                 verification: Verification, tracer: Tracer = Tracer(), frozen_models: Sequence[torch.nn.Module] = (),
                 shardable: Sequence[torch.nn.Module] = ()):
        super().__init__()
        self.automatic_optimization = False
        self.student = student
        self.tokenizer = tokenizer
        self.rollout = rollout
        self.estimator = estimator        # token | topk | full (gopd.estimators): batch -> loss, diagnostics, traces
        self.teacher = teacher            # Scorer or None (pure GRPO); evaluated once at the start
        self.optim = optim                # the optim section
        self.evaluation = dict(evaluation)  # greedy evaluation: answer/domain fields, max_new_tokens, batch_size
        self.verification = verification  # the rollouts' rewards: inline or in worker processes
        self.tracer = tracer
        self.ema = list(ema)
        self.student_prompts = student_prompts
        self.eval_rows = list(eval_rows)
        self._frozen = list(frozen_models)  # not submodules: never optimized or checkpointed
        self._shardable = list(shardable)   # the frozen models trainer=fsdp shards with the student
        self.stream = stream              # the prompt stream (its position is resume state)
        self.max_steps = int(max_steps)
        self.batches = 0                  # rollout batches done: the "step" of every logged row
        self.resume_state: dict | None = None  # set by the runner when a checkpoint is found
        self._pending_rng: dict | None = None

    # ------------------------------------------------------------------------------- set-up
    def configure_model(self) -> None:
        """``trainer=fsdp``: shard the student, and the frozen models scored in one forward per step
        (every rank must run each sharded model's forwards together), over the ranks (FSDP2);
        nothing under other strategies."""
        todo = [m for m in [self.student, *self._shardable] if not strategy.is_sharded(m)]
        if strategy.shard(self.trainer, todo):
            log.info("FSDP: the student and %d frozen model(s) sharded over %d ranks", len(todo) - 1,
                     self.trainer.world_size)

    def on_fit_start(self) -> None:
        for m in self._frozen + [e.model for e in self.ema]:
            if not strategy.is_sharded(m):  # a sharded one lives where its shard does
                m.to(self.device)
        if self.resume_state is not None:
            s = self.resume_state
            strategy.load_optimizer_state(self.student, self.optimizers().optimizer, s["optimizer"])
            self.lr_schedulers().load_state_dict(s["scheduler"])
            self.batches = s["progress"]["batches"]
        self.stream.position = self.batches  # the loader prefetches: resume from what was trained on

        self._pending_rng = None if self.resume_state is None else self.resume_state["rng"]
        self.rollout.sync(self.student)  # vLLM started on the checkpoint; a resumed student has moved on

    def teardown(self, stage: str) -> None:
        self.verification.close()

    def resume_payload(self) -> dict:
        """The module's part of what an identical resume needs (plain values and tensors; the
        callbacks and loggers add theirs)."""
        from gopd.checkpoint import rng_state

        return {
            "optimizer": strategy.optimizer_state(self.student, self.optimizers().optimizer),  # FSDP: gathered
            "scheduler": self.lr_schedulers().state_dict(),
            "rng": rng_state(),
            "progress": {"batches": self.batches},
        }

    def configure_optimizers(self):
        o = self.optim
        params = [p for p in self.student.parameters() if p.requires_grad]  # LoRA: the adapters only
        opt = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        warmup = max(int(o.warmup_steps), 0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / (warmup + 1)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --------------------------------------------------------------------------- one step
    def training_step(self, rows: list[dict], batch_idx: int) -> dict | None:
        pad = self.tokenizer.pad_token_id
        if self.batches >= self.max_steps:  # resumed at the end: nothing left to train
            self.trainer.should_stop = True
            return None
        if self._pending_rng is not None:  # restored here, after every set-up draw (e.g. the loader's seed)
            from gopd.checkpoint import set_rng_state

            set_rng_state(self._pending_rng)
            self._pending_rng = None
        clock = StageClock(self.device)

        batch = self.rollout.sample(rows)                                                   # rollout
        clock.lap("rollout")

        texts = decode(self.tokenizer, batch.completion_ids, batch.mask)
        pending = self.verification.submit(batch.rows, texts, batch.mask.device)           # verify (in the background)
        step = self.estimator(self.student, batch, pending, pad)                            # score -> advantages -> loss
        rewards = pending()
        n_tok, n_all = batch.num_tokens, distributed.global_tokens(batch.num_tokens)
        loss = step.loss * distributed.token_scale(n_tok, n_all)  # global token mean over the ranks
        if self.tracer.due(self.batches):
            self.tracer.save(self.trainer.default_root_dir, self.batches, batch, self.tokenizer,
                             rewards=rewards, rank=self.global_rank, **step.trace())
        for m in self._shardable:  # frozen: no backward reshards them; free their gathered root weights
            strategy.reshard(m)
        clock.lap("score")

        bad = _first_non_finite(batch.mask, **step.checks)
        if distributed.any_rank(bad is not None) and bad is None:  # every rank skips, or none
            bad = "values on another rank"
        grad_norm, bad = self._update(loss, bad)                                            # update
        with clock.part("sync"):  # inside perf/update_s
            self.rollout.sync(self.student)                                                 # sync
        clock.lap("update")

        metrics = {
            "train/reward": float(rewards.mean()),
            "train/response_len": n_tok / len(batch.rows),
            "train/prompt_len": sum(map(len, batch.prompt_ids)) / len(batch.rows),
            "train/loss": float(step.loss.detach()),  # this rank's token mean (the logged value is reduced over ranks)
            "train/grad_norm": grad_norm,
            "train/lr": self.optimizers().param_groups[0]["lr"],
            **clock.metrics,  # perf/{rollout,score,update}_s; on a GPU perf/mem_{rollout,score,update}_gb
            "perf/tokens_per_s": n_tok / max(clock.seconds, 1e-9),
        }
        metrics.update(step.diagnostics)
        metrics.update(self._response_shape(batch, texts, rewards, step.checks.get("advantages")))
        record = StepRecord(self.batches, metrics, n_tok, n_all, clock.seconds, bad)
        self.batches += 1
        if self.batches >= self.max_steps:
            self.trainer.should_stop = True
        return {"record": record}

    def _response_shape(self, batch: RolloutBatch, texts: list[str], rewards, advantages) -> dict[str, float]:
        """Length spread; in a search world, tries and the pressure on them (``gopd.responses``)."""
        out = length_metrics(batch.mask)
        if self.evaluation.get("answer_extract") == SEARCH_EXTRACT:
            adv = None if advantages is None else advantages.detach().float().cpu()
            out |= search_metrics(self.tokenizer, texts, batch.completion_ids.cpu(), batch.mask.cpu(), rewards.cpu(), adv)
        return out

    def _update(self, loss: torch.Tensor, bad: str | None) -> tuple[float, str | None]:
        """Backward, clip, step -> (gradient norm, what was non-finite). A step with anything
        non-finite (``bad`` names it) is skipped before it touches the weights; the Bookkeeping
        callback counts skips and stops a run of too many."""
        opt, sched = self.optimizers(), self.lr_schedulers()
        opt.zero_grad(set_to_none=True)
        norm = math.nan
        if bad is None:
            self.manual_backward(loss)
            norm = strategy.clip_grad_norm(self.student, self.optim.grad_clip)  # FSDP: all shards
            bad = None if math.isfinite(norm) else "gradient norm"
        if bad is not None:
            opt.zero_grad(set_to_none=True)
            return math.nan, bad
        opt.step()
        sched.step()
        for e in self.ema:
            e.update(self.student)
        return norm, None

    # --------------------------------------------------------------------------- evaluation
    def evaluate(self, *, with_teacher: bool = False) -> tuple[dict, dict | None]:
        """Held-out greedy accuracy of the student, and of the teacher when asked -> (student, teacher)."""
        kw = self.evaluation
        student = greedy_accuracy(self.student, self.tokenizer, self.student_prompts, self.eval_rows, **kw)
        teacher = None
        if with_teacher and self.teacher is not None:
            teacher = scorer_accuracy(self.teacher, self.tokenizer, self.eval_rows, **kw)
        return student, teacher


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
