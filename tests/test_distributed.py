"""Data-parallel ranks agree with one process (gopd.distributed): two gloo CPU ranks with unequal
completion-token counts take the gradient one process takes on the union of their batches (the
loss is a token mean over the global batch), skip together, and log the union's metrics."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from gopd import distributed
from gopd.estimators import Settings, build_estimator
from gopd.rollout import RolloutBatch

LENGTHS = ([3, 5, 2, 7], [9, 1, 12, 4])   # completion tokens of each rank's 4 rollouts: 17 vs 26
REWARDS = ([1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0])
SETTINGS = dict(alpha=2.0, pressure="full", clip=None, grpo_mix=0.5, grpo_scale=True, eps_low=0.2, eps_high=0.2,
                tis_cap=5.0, chunk_size=128)
TOKEN_LEVEL = ("train/loss", "opd/pos_mass", "opd/neg_mass", "opd/pos_frac", "opd/teacher_kl", "opd/ref_kl")


def _parts(world: Path, kind: str):
    """Student, estimator (the RL-checkpoint teacher and the step-0 student as reference) and tokenizer."""
    from gopd.pool import load_model, load_tokenizer
    from gopd.prompts import PromptBuilder
    from gopd.scoring import Route, Scorer

    tok = load_tokenizer(str(world / "student"))
    student = load_model(str(world / "student"), trainable=True).train()
    prompts = PromptBuilder(tok)
    teacher = Scorer({"teacher": Route(load_model(str(world / "teacher")), prompts)})
    reference = Scorer({"student0": Route(load_model(str(world / "student")), prompts)})
    estimator = build_estimator(_node(kind), Settings(**SETTINGS), teacher, reference)
    return student, estimator, tok


def _node(kind: str):
    from omegaconf import OmegaConf

    return OmegaConf.create({"name": kind, "k": 4} if kind == "topk" else {"name": kind})


def _batch(tok, ranks: list[int]) -> tuple[RolloutBatch, torch.Tensor]:
    """The rollouts of ``ranks`` in one batch (one rank's, or the union): fixed prompts and tokens."""
    from gopd.prompts import PromptBuilder

    rows, prompt_ids, seqs, groups, rewards = [], [], [], [], []
    for rank in ranks:
        g = torch.Generator().manual_seed(rank)
        for i, n in enumerate(LENGTHS[rank]):
            row = {"problem": f"{rank * 10 + i // 2}+{i // 2}", "answer": "0"}
            rows.append(row)
            prompt_ids.append(PromptBuilder(tok).ids(row))
            seqs.append(torch.randint(3, len(tok) - 1, (n,), generator=g).tolist())
            groups.append(len(groups) // 2)  # two rollouts per prompt, never split across ranks
            rewards.append(REWARDS[rank][i])
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
    return RolloutBatch(rows, prompt_ids, ids, mask, torch.tensor(groups)), torch.tensor(rewards)


def _step(student, estimator, tok, ranks):
    """One backward of the scaled loss (as GOPDModule.training_step); grads and metrics."""
    batch, rewards = _batch(tok, ranks)
    step = estimator(student, batch, lambda: rewards, tok.pad_token_id)
    n_all = distributed.global_tokens(batch.num_tokens)
    (step.loss * distributed.token_scale(batch.num_tokens, n_all)).backward()
    metrics = {"train/loss": float(step.loss.detach()), "train/reward": float(rewards.mean()), **step.diagnostics}
    return metrics, batch.num_tokens, n_all


def _worker(rank: int, world_dir: str, port: int, kind: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        student, estimator, tok = _parts(Path(world_dir), kind)
        metrics, n_local, n_all = _step(student, estimator, tok, [rank])
        for p in student.parameters():  # what DDP does after backward: the mean of the ranks' gradients
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= 2
        reduced = distributed.reduce_metrics(metrics, n_local)
        skip = distributed.any_rank(rank == 1)  # only rank 1 saw a non-finite value
        mine, calls = distributed.share(9, 2)  # evaluation's split: 5 and 4 rows, 3 generate calls each
        gathered = distributed.gather_dict({i: rank for i in mine})
        std = distributed.global_std(torch.tensor(REWARDS[rank]))  # grpo.scale=batch: the step's reward std
        if rank == 0:
            grads = {n: p.grad for n, p in student.named_parameters() if p.grad is not None}
            torch.save(grads, Path(out) / "grads.pt")
            (Path(out) / "metrics.json").write_text(json.dumps({"metrics": reduced, "n_all": n_all, "skip": skip,
                                                                "calls": calls, "gathered": gathered,
                                                                "std": std}))
        dist.barrier()  # no rank tears its connections down while the other still uses them
    finally:
        dist.destroy_process_group()
    # Both ranks have finished and rank 0 wrote its files: leave without the interpreter's teardown,
    # where a gloo thread still being destroyed once aborted a rank ("terminate called without an
    # active exception", SIGABRT) after all of its work was done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["token", "topk"])
def test_two_ranks_take_the_union_step(toy_world_mini, tmp_path, kind):
    mp.spawn(_worker, args=(str(toy_world_mini), _free_port(), kind, str(tmp_path)), nprocs=2, join=True)
    student, estimator, tok = _parts(toy_world_mini, kind)
    metrics, n_union, _ = _step(student, estimator, tok, [0, 1])  # one process, the union, no process group
    ranks = json.loads((tmp_path / "metrics.json").read_text())
    assert ranks["n_all"] == n_union == sum(map(sum, LENGTHS)) and ranks["skip"] is True
    assert ranks["calls"] == 3 and ranks["gathered"] == {str(i): i % 2 for i in range(9)}
    assert ranks["std"] == pytest.approx(float(torch.tensor(REWARDS[0] + REWARDS[1]).double().std()), abs=1e-12)
    grads = torch.load(tmp_path / "grads.pt")
    worst = max(float((grads[n] - p.grad).abs().max()) for n, p in student.named_parameters() if p.grad is not None)
    assert worst < 1e-6, worst
    for key in TOKEN_LEVEL + ("train/reward",):
        if key in metrics and math.isfinite(metrics[key]):
            assert ranks["metrics"][key] == pytest.approx(metrics[key], abs=1e-6), key


def test_one_process_is_the_identity():
    metrics = {"train/loss": 1.5, "opd/max_shock": math.nan, "perf/tokens_per_s": 10.0}
    assert distributed.world_size() == 1 and distributed.global_tokens(17) == 17
    assert distributed.token_scale(17, 17) == 1.0 and distributed.any_rank(False) is False
    assert distributed.reduce_metrics(metrics, 17) is metrics
    assert distributed.share(10, 4) == (list(range(10)), 3) and distributed.gather_dict({1: 2}) == {1: 2}
    assert distributed.global_std(torch.tensor([1.0, 0.0, 1.0])) == pytest.approx(float(torch.tensor([1.0, 0, 1]).std()))
