"""A training step's memory stays flat in the completion length: no ``[B, T, V]`` logits tensor.

A ``TorchDispatchMode`` sees every tensor an ATen op returns during a whole run (rollout,
scoring, every estimator's loss and backward, the optimizer, greedy evaluation of student and
teacher). Logits-like tensors (last dimension = the vocabulary) must stay within
``max(chunk, rows of one generate call) x V``; the naive vocabulary loss is the control that
shows the probe sees a ``[B, T, V]`` tensor when there is one.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from test_train import compose_cfg, read_metrics  # the miniature world's config; metrics.csv rows

pytestmark = pytest.mark.usefixtures("one_thread")


class LargestLogits(TorchDispatchMode):
    """Records the largest tensor with last dimension ``vocab`` that any op allocates (views, such as a
    weight's transpose or a broadcast, allocate nothing and are skipped)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.numel, self.where = vocab, 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):  # a view (or in-place) of an input
            return out
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == self.vocab and t.numel() > self.numel:
                self.numel, self.where = t.numel(), f"{func} -> {tuple(t.shape)}"
        return out


CHUNK, ROWS, NEW_TOKENS = 8, 8, 40  # 4 prompts x 2 samples; evaluation in batches of 8


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["token", "topk", "full"])
def test_no_batch_by_length_by_vocabulary_tensor_in_a_run(toy_world_mini, tmp_path, estimator):
    from gopd.run import run

    cfg = compose_cfg([f"estimator={estimator}", "teacher=rl_checkpoint", "reference=pre_rl", "alpha=1.5",
                       "grpo_mix=0.25", f"loss.chunk_size={CHUNK}", f"rollout.max_new_tokens={NEW_TOKENS}",
                       "rollout.prompts_per_step=4", "rollout.n=2", f"eval.batch_size={ROWS}"])
    vocab = _vocab_size(toy_world_mini)
    with LargestLogits(vocab) as probe:
        summary = run(cfg, tmp_path, estimator)
    assert summary["status"] == "completed"
    rows = read_metrics(tmp_path)
    longest = max(float(r["train/response_len_p90"]) for r in rows if r.get("train/response_len_p90"))
    assert longest >= 4, "completions too short for the probe to tell [B, T, V] from [B, V]"
    assert probe.numel <= max(CHUNK, ROWS) * vocab, probe.where


@pytest.mark.slow
def test_the_probe_sees_the_naive_vocabulary_loss(toy_world_mini):
    """The control: the unchunked reference loss builds ``[B, T, V]`` log-probs, and the probe says so."""
    from gopd.rollout import RolloutBatch
    from gopd.scoring import Route, Scorer
    from gopd.prompts import PromptBuilder
    from gopd.toy.models import load_checkpoint
    from gopd.vocab import naive_vocab_opd_loss, vocab_opd_loss

    model, tok = load_checkpoint(toy_world_mini / "student")
    b, t = 4, 10
    batch = RolloutBatch(rows=[{"problem": "1+1"}] * b, prompt_ids=[[5, 6, 7]] * b,
                         completion_ids=torch.randint(10, 100, (b, t)), mask=torch.ones(b, t),
                         group_ids=torch.arange(b))
    teacher = Scorer({"t": Route(model, PromptBuilder(tok))}, chunk_size=CHUNK)
    vocab = model.get_output_embeddings().weight.shape[0]
    with LargestLogits(vocab) as naive:
        naive_vocab_opd_loss(model, teacher, None, batch, tok.pad_token_id).loss.backward()
    with LargestLogits(vocab) as chunked:
        vocab_opd_loss(model, teacher, None, batch, tok.pad_token_id, chunk_size=CHUNK).loss.backward()
    assert naive.numel >= b * t * vocab > chunked.numel


def _vocab_size(world) -> int:
    import json

    return int(json.loads((world / "student" / "config.json").read_text())["vocab_size"])

