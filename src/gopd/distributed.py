"""What the data-parallel ranks of one run must agree on, so that a step on W ranks is the step
one process would take on the union of their batches.

- The loss is a token mean over the global batch: each rank's token-mean loss is scaled by
  ``W * n_rank / N`` (DDP and FSDP average gradients over ranks, which undoes the ``W``).
- A step is skipped on every rank when any rank saw a non-finite value (else their collectives
  would no longer match).
- Metrics are reduced over ranks before they are logged: token-level ones weighted by each
  rank's completion tokens, maxima by max, throughput by sum, the rest by mean.

Outside a process group (one process) every function is the identity, bit for bit.
"""

from __future__ import annotations

import math

import torch

MAX_METRICS = ("opd/max_shock", "rollout/logp_gap_max", "perf/mem_rollout_gb", "perf/mem_score_gb",
               "perf/mem_update_gb")  # peak GPU memory: the fullest rank
SUM_METRICS = ("perf/tokens_per_s",)
TOKEN_METRICS = ("train/loss", "opd/pos_mass", "opd/neg_mass", "opd/pos_frac", "opd/teacher_kl", "opd/ref_kl",
                 "mix/sign_agreement", "rollout/logp_gap_mean")  # means over completion tokens


def _group_up() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if _group_up() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if _group_up() else 0


def _device() -> torch.device:
    """Where the process group's collectives run (NCCL needs the rank's GPU; gloo takes CPU tensors)."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(values: list[float], op: str) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t.tolist()


def global_tokens(n_local: int) -> int:
    """Completion tokens of the whole step (all ranks)."""
    return n_local if world_size() == 1 else int(_all_reduce([float(n_local)], "sum")[0])


def global_std(values: torch.Tensor) -> float:
    """Unbiased std of the values of every rank together (one process: ``values.std()``)."""
    v = values.detach().double()
    if world_size() == 1:
        return float(v.std())
    n, total, squares = _all_reduce([float(v.numel()), float(v.sum()), float((v * v).sum())], "sum")
    return math.sqrt(max(squares - total * total / n, 0.0) / max(n - 1, 1.0))


def token_scale(n_local: int, n_global: int) -> float:
    """Factor that turns a rank's token-mean loss into its share of the global token mean."""
    w = world_size()
    return 1.0 if w == 1 else w * n_local / max(n_global, 1)


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any rank."""
    return flag if world_size() == 1 else _all_reduce([float(flag)], "max")[0] > 0


def reduce_metrics(metrics: dict, n_local: int) -> dict:
    """One step's metrics as the whole job saw them (every rank must call this; the same keys on each)."""
    if world_size() == 1:
        return metrics
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    w = float(world_size())
    weights = {k: (n_local if k in TOKEN_METRICS else 1.0) for k in keys}
    # nan (a term that does not apply) is summed as 0 with weight 0; all nan stays nan
    sums = [weights[k] * metrics[k] if math.isfinite(metrics[k]) else 0.0 for k in keys]
    counts = [weights[k] if math.isfinite(metrics[k]) else 0.0 for k in keys]
    maxima = [metrics[k] if math.isfinite(metrics[k]) else -math.inf for k in keys]
    reduced = _all_reduce(sums + counts, "sum")
    top = _all_reduce(maxima, "max")
    out = dict(metrics)
    for i, k in enumerate(keys):
        total, count = reduced[i], reduced[len(keys) + i]
        if k in MAX_METRICS:
            out[k] = top[i] if top[i] > -math.inf else math.nan
        elif count == 0:
            out[k] = math.nan
        elif k in SUM_METRICS:
            out[k] = total * w / count  # the mean rank's throughput times the ranks
        else:
            out[k] = total / count
    return out


def share(n: int, batch_size: int) -> tuple[list[int], int]:
    """This rank's share of ``n`` items (every W-th, from its rank) and how many batches every rank
    runs (the busiest rank's). One process: all items, ``ceil(n / batch_size)`` batches."""
    w = world_size()
    mine = list(range(rank(), n, w))
    calls = -(-len(range(0, n, w)) // max(batch_size, 1))  # rank 0 has the most
    return mine, calls


def gather_dict(part: dict) -> dict:
    """The union of every rank's ``part`` (picklable values), on every rank."""
    if world_size() == 1:
        return part
    import torch.distributed as dist

    parts = [None] * world_size()
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in p.items()}
