"""The G-OPD objective (arXiv 2602.12125) with pressure modes, mixed with GRPO.

Pure tensor math: no models, no I/O, no config objects. Every tensor is over completion
positions, ``[B, T]`` (``B`` rollouts, ``T`` positions), and ``mask`` is 1 on real completion
tokens. Symbols (README, "The objective"):

    s_t = log pi_old(y_t)   student at rollout time, student prompt
    q_t = log pi_T(y_t)     teacher, teacher prompt (e.g. with the hint)
    r_t = log pi_ref(y_t)   reference, student prompt

    delta_t = alpha * (q_t - r_t) - (s_t - r_t)

Public, stable API (other code and outside checks import these names): ``token_advantages``,
``grpo_advantages``, ``mix_advantages``, ``policy_loss``; plus ``opd_diagnostics`` and
``target_logp`` (the distribution G-OPD converges to, for diagnostics).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

PRESSURES = ("full", "positive", "negative", "flip_correct")  # maps of delta alone (any estimator)
NEEDS_CORRECT = frozenset({"flip_correct"})  # pressures that read which rollouts verified (``correct``)
REWEIGHTED = ("rlrt", "rlsd")  # GRPO's advantage reweighted per token by delta (reweighted_grpo; sampled tokens)
NORMALIZE = ("all", "kept")


# ---------------------------------------------------------------------------------------------
# validation helpers (each raises a ValueError naming the argument and what would be valid)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 (1 = OPD, >1 = ExOPD), got {alpha!r}")
    return float(alpha)


def _check_pressure(pressure) -> str:
    if pressure not in PRESSURES:
        raise ValueError(f"pressure must be one of {', '.join(PRESSURES)}, got {pressure!r}")
    return pressure


def needs_correct(pressure: str) -> bool:
    """Whether ``pressure`` maps delta by the verified answers, so its caller must wait for them."""
    return pressure in NEEDS_CORRECT


def _check_mix(grpo_mix) -> float:
    if (
        isinstance(grpo_mix, bool)
        or not isinstance(grpo_mix, Real)
        or not math.isfinite(grpo_mix)
        or not 0.0 <= grpo_mix <= 1.0
    ):
        raise ValueError(f"grpo_mix must be a number in [0, 1] (0 = pure G-OPD, 1 = pure GRPO), got {grpo_mix!r}")
    return float(grpo_mix)


def _check_2d(name: str, x: Tensor, shape: torch.Size | None) -> torch.Size:
    if not isinstance(x, Tensor) or x.dim() != 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a [B, T] tensor, got {got}")
    if shape is not None and x.shape != shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)} like the other [B, T] inputs")
    return x.shape


def _check_1d(name: str, x: Tensor, batch: int) -> None:
    if not isinstance(x, Tensor) or x.shape != (batch,):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a [B] tensor with B={batch}, got {got}")


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    # where(), not multiply: padding log-probs may be -inf/nan and 0 * nan is nan.
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))


# ---------------------------------------------------------------------------------------------
# advantages


def token_delta(student_logp: Tensor, teacher_logp: Tensor, ref_logp: Tensor | None, *, alpha: float) -> Tensor:
    """``delta_t = alpha * (q - r) - (s - r)``, written as ``(q - s) + (alpha - 1) * (q - r)``.

    The two forms are equal; the second is bit-exact in the two degenerate cases the tests pin:
    ``alpha == 1`` (the reference cancels, ``ref_logp`` may then be ``None``) and ``r == q``
    (``reference=teacher``: alpha is inert).
    """
    alpha = _check_alpha(alpha)
    if ref_logp is None:
        if alpha != 1.0:
            raise ValueError(f"ref_logp is required when alpha != 1 (got alpha={alpha}); only alpha=1 ignores the reference")
        return teacher_logp - student_logp
    return (teacher_logp - student_logp) + (alpha - 1.0) * (teacher_logp - ref_logp)


def apply_pressure(delta: Tensor, pressure: str, correct: Tensor | None = None) -> Tensor:
    """Map the raw signal to the OPD advantage (elementwise; works for ``[B, T]`` or ``[B, T, V]``).

    full: delta; positive: max(delta, 0); negative: min(delta, 0);
    flip_correct: max(delta, 0) + c * |min(delta, 0)|, c = 1 on rollouts whose answer verified (the
    negative signal flipped into a positive one on correct rollouts; not RLRT, see ``reweighted_grpo``).
    """
    pressure = _check_pressure(pressure)
    if pressure == "full":
        return delta
    if pressure == "positive":
        return delta.clamp_min(0.0)
    if pressure == "negative":
        return delta.clamp_max(0.0)
    if correct is None:
        raise ValueError("correct (a [B] bool tensor of verified rollouts) is required for pressure='flip_correct'")
    _check_1d("correct", correct, delta.shape[0])
    c = correct.to(delta.dtype).reshape((-1,) + (1,) * (delta.dim() - 1))
    return delta.clamp_min(0.0) + c * (-delta.clamp_max(0.0))


def token_advantages(
    student_logp: Tensor,
    teacher_logp: Tensor,
    ref_logp: Tensor | None,
    mask: Tensor,
    *,
    alpha: float,
    pressure: str,
    correct: Tensor | None = None,
    clip: float | None = None,
) -> Tensor:
    """Per-token G-OPD advantage ``A_t`` ``[B, T]``, exactly 0 where ``mask == 0``.

    ``A_t = clamp(pressure(delta_t), -clip, clip)``; a constant for the loss (detached).
    ``ref_logp`` may be ``None`` only when ``alpha == 1``.
    """
    _check_alpha(alpha)
    _check_pressure(pressure)
    shape = _check_2d("student_logp", student_logp, None)
    _check_2d("teacher_logp", teacher_logp, shape)
    if ref_logp is not None:
        _check_2d("ref_logp", ref_logp, shape)
    _check_2d("mask", mask, shape)
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, Real) or not clip > 0):
        raise ValueError(f"clip must be a number > 0 or None (off), got {clip!r}")
    with torch.no_grad():
        delta = token_delta(student_logp.detach(), teacher_logp.detach(),
                            None if ref_logp is None else ref_logp.detach(), alpha=alpha)
        adv = apply_pressure(delta, pressure, correct)
        if clip is not None:
            adv = adv.clamp(-float(clip), float(clip))
        return _masked(adv, mask)


def reweighted_grpo(
    student_logp: Tensor,
    teacher_logp: Tensor,
    ref_logp: Tensor | None,
    mask: Tensor,
    grpo: Tensor,
    *,
    alpha: float,
    mode: str,
    correct: Tensor,
    lam: float,
    eps_w: float,
    clip: float | None = None,
) -> Tensor:
    """RLRT and RLSD (arXiv 2605.10781 and its RLSD baseline): GRPO's outcome advantage ``G_i``
    reweighted per token by how much teacher and student disagree on it, ``[B, T]``, 0 off the mask.

        w_t = clip(exp(sign(G_i) * d_t), max(0, 1 - eps_w), 1 + eps_w)
        A_t = G_i * ((1 - lam) + lam * w_t)     on gated rollouts, G_i on the others

    rlrt: ``d_t = s_t - q_t`` (tokens the student chose that the hinted teacher would not predict,
    the "self-driven" ones, weigh more), gated to rollouts whose answer verified (wrong ones keep
    plain GRPO). rlsd: ``d_t = q_t - s_t`` (the teacher's tokens weigh more), every rollout.
    With a reference and ``alpha != 1``, ``q_t - s_t`` generalises to G-OPD's ``delta_t`` (equal
    at ``alpha = 1``). ``lam = 0`` is plain GRPO; ``G_i = 0`` (a group all right or all wrong)
    gives 0; the weight never flips the sign of ``G_i``. A constant for the loss (detached).
    """
    if mode not in REWEIGHTED:
        raise ValueError(f"mode must be one of {', '.join(REWEIGHTED)}, got {mode!r}")
    shape = _check_2d("student_logp", student_logp, None)
    _check_2d("teacher_logp", teacher_logp, shape)
    _check_2d("mask", mask, shape)
    _check_1d("grpo", grpo, shape[0])
    _check_1d("correct", correct, shape[0])
    if isinstance(lam, bool) or not isinstance(lam, Real) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be a number in [0, 1] (0 = plain GRPO), got {lam!r}")
    if isinstance(eps_w, bool) or not isinstance(eps_w, Real) or not eps_w > 0:
        raise ValueError(f"eps_w must be a number > 0 (the weight is clipped to [1 - eps_w, 1 + eps_w], floor 0), "
                         f"got {eps_w!r}")
    with torch.no_grad():
        delta = token_delta(student_logp.detach(), teacher_logp.detach(),
                            None if ref_logp is None else ref_logp.detach(), alpha=alpha)
        d = -delta if mode == "rlrt" else delta
        g = grpo.detach().to(delta.dtype)[:, None]
        w = torch.exp(torch.sign(g) * d).clamp(max(0.0, 1.0 - eps_w), 1.0 + eps_w)
        shaped = g * ((1.0 - lam) + lam * w)
        gate = correct.bool() if mode == "rlrt" else torch.ones_like(correct, dtype=torch.bool)
        adv = torch.where(gate[:, None], shaped, g.expand(shape))
        if clip is not None:
            adv = adv.clamp(-float(clip), float(clip))
        return _masked(adv, mask)


def kept_tokens(advantages: Tensor, mask: Tensor) -> int:
    """Completion tokens whose advantage survived the pressure mode (``!= 0``)."""
    return int((mask.bool() & (advantages != 0)).sum())


def kept_scale(n_all: int, n_kept: int) -> float:
    """``N / N_kept``: what turns a token mean over every completion token into one over the kept
    tokens (``pressure.normalize=kept``, as OpenTinker's positive-only filter drops the others from
    the mask); 1.0 when nothing was kept (the loss is then 0). Counts over the whole step."""
    return n_all / n_kept if n_kept > 0 else 1.0


GRPO_SCALES = ("group", "batch", "none")


def grpo_advantages(rewards: Tensor, group_ids: Tensor, *, scale: str | bool = "group", eps: float = 1e-6,
                    batch_std: float | None = None) -> Tensor:
    """GRPO outcome advantage per rollout ``[B]``: ``(R_i - mean_g R) / (std + eps)``.

    ``scale``: ``group`` (or True) divides by the group's std (verl, TRL's default), ``batch`` by
    the std of every reward of the step (TRL's ``scale_rewards="batch"``; ``batch_std`` when the
    step spans ranks, else this batch's), ``none`` (or False) not at all (Dr. GRPO). Stds are
    unbiased (Bessel-corrected), as ``torch.std`` in TRL and verl; ``eps`` is 1e-6 as verl's (TRL
    uses 1e-4). A group whose rewards are all equal (or a group of one) gives exactly 0. Group ids
    need not be contiguous or sorted.
    """
    scale = {True: "group", False: "none"}.get(scale, scale) if isinstance(scale, bool) else scale
    if scale not in GRPO_SCALES:
        raise ValueError(f"scale must be one of {', '.join(GRPO_SCALES)}, got {scale!r}")
    if isinstance(eps, bool) or not isinstance(eps, Real) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    if not isinstance(rewards, Tensor) or rewards.dim() != 1:
        raise ValueError(f"rewards must be a [B] tensor, got {getattr(rewards, 'shape', type(rewards).__name__)}")
    _check_1d("group_ids", group_ids, rewards.shape[0])
    rewards = rewards.detach().to(torch.float32 if not rewards.is_floating_point() else rewards.dtype)
    _, inv = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.numel() else 0
    zeros = torch.zeros(n_groups, dtype=rewards.dtype, device=rewards.device)
    count = zeros.index_add(0, inv, torch.ones_like(rewards))
    mean = zeros.index_add(0, inv, rewards) / count
    centred = rewards - mean[inv]
    sq = zeros.index_add(0, inv, centred.square())
    std = torch.sqrt(sq / (count - 1).clamp_min(1.0))
    lo = torch.full_like(zeros, math.inf).scatter_reduce(0, inv, rewards, reduce="amin")
    hi = torch.full_like(zeros, -math.inf).scatter_reduce(0, inv, rewards, reduce="amax")
    if scale == "group":
        adv = centred / (std[inv] + eps)
    elif scale == "batch":
        b = float(rewards.std()) if batch_std is None else batch_std
        adv = centred / (b + eps)
    else:
        adv = centred
    return torch.where((hi == lo)[inv], torch.zeros_like(adv), adv)


def mix_advantages(opd: Tensor, grpo: Tensor, grpo_mix: float, mask: Tensor) -> Tensor:
    """``A_t = (1 - m) * A_t(OPD) + m * G_i`` ``[B, T]``, 0 where ``mask == 0``.

    The endpoints are exact: ``m = 0`` returns the OPD advantage untouched and ``m = 1`` never
    reads it (so a run with no teacher may pass zeros or even nan there).
    """
    m = _check_mix(grpo_mix)
    shape = _check_2d("opd", opd, None)
    _check_2d("mask", mask, shape)
    _check_1d("grpo", grpo, shape[0])
    g = grpo.to(opd.dtype)[:, None].expand(shape)
    if m == 0.0:
        mixed = opd
    elif m == 1.0:
        mixed = g
    else:
        mixed = (1.0 - m) * opd + m * g
    return _masked(mixed, mask)


# ---------------------------------------------------------------------------------------------
# loss


def token_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over real tokens of the whole batch (not per sequence)."""
    return _masked(x, mask).sum() / mask.sum().clamp_min(1)


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    rollout_logp: Tensor | None = None,
    tis_cap: float = 5.0,
    dual_clip: float | None = None,
) -> Tensor:
    """PPO-clip policy loss, token-mean over every completion token in the batch.

        rho  = exp(logp - old_logp)
        loss = -mean_t w_t * min(rho * A, clamp(rho, 1 - eps_low, 1 + eps_high) * A)

    ``dual_clip = c > 1`` (verl's ``clip_ratio_c``): where ``A < 0`` the surrogate is at least
    ``c * A``, so a token whose ratio ran far above 1 cannot push the loss without bound.

    ``w_t = min(exp(old_logp - rollout_logp), tis_cap)`` (truncated importance sampling) when the
    rollout engine's own log-probs are given (vLLM), else 1. ``advantages``, ``old_logp`` and
    ``rollout_logp`` are constants; the gradient flows through ``logp`` only.
    """
    shape = _check_2d("logp", logp, None)
    _check_2d("old_logp", old_logp, shape)
    _check_2d("advantages", advantages, shape)
    _check_2d("mask", mask, shape)
    if rollout_logp is not None:
        _check_2d("rollout_logp", rollout_logp, shape)
    if not (0 <= eps_low < 1 and eps_high >= 0):
        raise ValueError(f"eps_low must be in [0, 1) and eps_high >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    if not tis_cap > 0:
        raise ValueError(f"tis_cap must be > 0, got {tis_cap}")
    if dual_clip is not None and not dual_clip > 1:
        raise ValueError(f"dual_clip must be a number > 1 or None (off), got {dual_clip}")
    keep = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    adv = torch.where(keep, advantages.detach(), zero)
    log_ratio = torch.where(keep, logp - old_logp.detach(), zero)
    ratio = torch.exp(log_ratio)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv)
    if dual_clip is not None:
        surrogate = torch.where(adv < 0, torch.maximum(surrogate, dual_clip * adv), surrogate)
    if rollout_logp is not None:
        gap = torch.where(keep, old_logp.detach() - rollout_logp.detach(), zero)
        surrogate = surrogate * torch.exp(gap).clamp_max(tis_cap)
    return -token_mean(surrogate, mask)


# ---------------------------------------------------------------------------------------------
# diagnostics


def opd_diagnostics(
    student_logp: Tensor,
    teacher_logp: Tensor | None,
    ref_logp: Tensor | None,
    mask: Tensor,
    opd_adv: Tensor | None,
    grpo_adv: Tensor | None = None,
    group_ids: Tensor | None = None,
) -> dict[str, float]:
    """Batch diagnostics of the distillation signal, as floats (W&B slash names).

    All means are over real completion tokens of the batch (``N`` = ``mask.sum()``):

    - ``opd/pos_mass``  sum of ``max(A_opd, 0)`` / N: how much the update pushes tokens up.
    - ``opd/neg_mass``  sum of ``max(-A_opd, 0)`` / N (a magnitude, >= 0): how much it pushes down.
    - ``opd/pos_frac``  fraction of tokens with ``A_opd > 0``.
    - ``opd/teacher_kl`` mean of ``s - q``: sampled-token (k1) estimate of KL(student || teacher).
    - ``opd/ref_kl``    mean of ``s - r``: the same estimate of KL(student || reference).
    - ``opd/max_shock`` max over tokens of ``|q - s|``: the largest per-token teacher/student
      disagreement (the "KL shock"; alpha- and pressure-independent).
    - ``grpo/zero_std_frac`` fraction of groups whose GRPO advantages are all 0 (all rewards
      equal: no outcome signal); per rollout when ``group_ids`` is not given.
    - ``mix/sign_agreement`` over rollouts where both are non-zero, the fraction whose summed
      OPD advantage has the sign of their GRPO advantage (nan when there is none).

    Terms whose inputs are ``None`` (no teacher, no GRPO) are omitted.
    """
    keep = mask.bool()
    n = keep.sum().clamp_min(1)
    out: dict[str, float] = {}

    def mean(x: Tensor) -> float:
        return float(_masked(x, mask).sum() / n)

    if opd_adv is not None:
        out["opd/pos_mass"] = mean(opd_adv.clamp_min(0))
        out["opd/neg_mass"] = mean((-opd_adv).clamp_min(0))
        out["opd/pos_frac"] = mean((opd_adv > 0).to(student_logp.dtype))
    if teacher_logp is not None:
        out["opd/teacher_kl"] = mean(student_logp - teacher_logp)
        gap = _masked((teacher_logp - student_logp).abs(), mask)
        out["opd/max_shock"] = float(gap.max()) if keep.any() else 0.0
    if ref_logp is not None:
        out["opd/ref_kl"] = mean(student_logp - ref_logp)
    if grpo_adv is not None:
        zero = grpo_adv == 0
        if group_ids is not None:
            _, inv = torch.unique(group_ids, return_inverse=True)
            nonzero_in_group = torch.zeros(int(inv.max()) + 1, device=inv.device).index_add(0, inv, (~zero).float())
            out["grpo/zero_std_frac"] = float((nonzero_in_group == 0).float().mean())
        else:
            out["grpo/zero_std_frac"] = float(zero.float().mean())
        if opd_adv is not None:
            summed = _masked(opd_adv, mask).sum(dim=1)
            both = (summed != 0) & ~zero
            agree = (torch.sign(summed) == torch.sign(grpo_adv)) & both
            out["mix/sign_agreement"] = float(agree.sum() / both.sum()) if both.any() else float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# full-vocabulary and top-k estimators (README, "Configuration": `estimator`)
#
# The same definitions as above, applied to every vocabulary entry v at each completion
# position: tensors are [..., V] (usually [B, T, V] or a chunk of positions [n, V]).
#
#     delta(v) = alpha * (q(v) - r(v)) - (s(v) - r(v));   A(v) = clip(pressure(delta(v)))
#     loss     = -(1/N) sum_t sum_v pi_theta(v) * A(v)     (A a constant)
#
# With pressure=full at theta = theta_old, A = g - s with g = alpha * q + (1 - alpha) * r, and the
# logit gradient -p * (A - E_p[A]) is exactly that of KL(pi_theta || softmax(g)): the reverse KL
# to the normalised pi_ref^(1-alpha) pi_T^alpha, i.e. the analytic expectation of the token
# estimator's gradient.

ESTIMATORS = ("token", "full", "topk")


def _check_same(name: str, x: Tensor | None, like: Tensor, like_name: str = "student_logp_v") -> None:
    if x is not None and (not isinstance(x, Tensor) or x.shape != like.shape):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} has shape {got}, expected {tuple(like.shape)} like {like_name}")


def vocab_advantages(
    student_logp_v: Tensor,
    teacher_logp_v: Tensor,
    ref_logp_v: Tensor | None,
    *,
    alpha: float,
    pressure: str,
    correct: Tensor | None = None,
    clip: float | None = None,
    support: Tensor | None = None,
) -> Tensor:
    """Per-entry G-OPD advantage ``A(v)`` ``[..., V]`` (detached): the token rule on every entry.

    ``correct`` (``pressure='flip_correct'``) is a bool tensor over the leading dimension (``[B]``
    for ``[B, T, V]``, or one flag per position for a ``[n, V]`` chunk). ``ref_logp_v`` may be
    ``None`` only when ``alpha == 1``; pass the teacher's tensor for ``reference=teacher``.
    ``support`` (bool ``[..., V]``, top-k: ``topk_support``) keeps ``A(v)`` on the support and gives
    every other entry the advantage of one tail bucket (see ``_with_tail``).
    """
    _check_alpha(alpha)
    _check_pressure(pressure)
    if not isinstance(student_logp_v, Tensor) or student_logp_v.dim() < 2:
        raise ValueError(f"student_logp_v must be a [..., V] tensor with a leading dimension, "
                         f"got {getattr(student_logp_v, 'shape', type(student_logp_v).__name__)}")
    _check_same("teacher_logp_v", teacher_logp_v, student_logp_v)
    _check_same("ref_logp_v", ref_logp_v, student_logp_v)
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, Real) or not clip > 0):
        raise ValueError(f"clip must be a number > 0 or None (off), got {clip!r}")
    if ref_logp_v is None and alpha != 1:
        raise ValueError(f"ref_logp_v is required when alpha != 1 (got alpha={alpha}); only alpha=1 ignores the reference")
    with torch.no_grad():
        # token_delta's form, (q - s) + (alpha - 1) * (q - r), in place: [..., V] blocks are large.
        delta = teacher_logp_v.detach() - student_logp_v.detach()
        if ref_logp_v is not None and alpha != 1:
            delta.add_(teacher_logp_v.detach() - ref_logp_v.detach(), alpha=alpha - 1.0)
        adv = apply_pressure(delta, pressure, correct)
        adv = adv if clip is None else adv.clamp_(-float(clip), float(clip))
    if support is None:
        return adv
    return _with_tail(adv, support, student_logp_v, teacher_logp_v, ref_logp_v, alpha=alpha, pressure=pressure,
                      correct=correct, clip=clip)


def topk_support(teacher_logp_v: Tensor, k: int, sampled: Tensor | None = None) -> Tensor:
    """Bool ``[..., V]``: the teacher's top-``k`` entries plus the sampled token (``[...]``).

    The sampled token is already in the top-k on most positions; the union then has k entries,
    else k + 1. ``k >= V`` selects every entry (top-k then equals the full estimator exactly).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (estimator.k) must be an integer >= 1, got {k!r}")
    vocab = teacher_logp_v.shape[-1]
    if k >= vocab:
        return torch.ones(teacher_logp_v.shape, dtype=torch.bool, device=teacher_logp_v.device)
    keep = torch.zeros(teacher_logp_v.shape, dtype=torch.bool, device=teacher_logp_v.device)
    keep.scatter_(-1, teacher_logp_v.topk(k, dim=-1).indices, True)
    if sampled is not None:
        if sampled.shape != teacher_logp_v.shape[:-1]:
            raise ValueError(f"sampled has shape {tuple(sampled.shape)}, expected {tuple(teacher_logp_v.shape[:-1])}")
        keep.scatter_(-1, sampled.unsqueeze(-1), True)
    return keep


def _with_tail(adv_v: Tensor, support: Tensor, student_logp_v: Tensor, teacher_logp_v: Tensor,
               ref_logp_v: Tensor | None, *, alpha: float, pressure: str, correct: Tensor | None,
               clip: float | None) -> Tensor:
    """Top-k with a tail bucket: ``A(v)`` on the support, the tail's advantage everywhere else.

    Each model's distribution is coarsened to the kept entries plus one *tail* bucket holding its
    mass outside the support (``log sum_{v not kept} p(v)``), and the token rule (``delta``, the
    pressure, ``clip``) is applied to the bucket as to any entry; every entry outside the support
    carries the tail's advantage, so ``sum_v pi(v) A(v)`` is the coarsened distribution's sum and,
    with ``pressure=full``, its gradient at ``theta_old`` is the reverse-KL gradient over the
    ``k + 1`` buckets. Kept entries keep their true log-probs (nothing is renormalised), so their
    ``A(v)`` is exactly the full estimator's and ``k >= V`` (no tail) is the full estimator.

    At ``alpha != 1`` the bucket's target is, by this definition, the geometric mixture of the
    *coarsened* models, ``alpha * log q(tail) + (1 - alpha) * log r(tail)``, not the coarsening
    of the full target ``pi_ref^(1-alpha) pi_T^alpha`` (the log of a sum is not the sum of the
    logs); the two agree at ``alpha = 1`` and on every kept entry.

    Why not ``A = 0`` outside (the plain restricted sum): the mean advantage is usually negative
    (about ``-KL``), so a zero outside the support is *above* average and the softmax coupling
    raises the outside entries, the ones the teacher ranks lowest; on the toy world that leak drove the
    teacher KL up from step ~200 and cost ~10 points by step 300 (results/estimators/).
    Why not renormalise each model over the support: the per-position constants differ between
    models (their masses on the set differ), which would bias ``delta`` on the kept entries.
    """
    _check_same("support", support, adv_v)
    with torch.no_grad():
        outside = torch.tensor(float("-inf"), dtype=student_logp_v.dtype, device=student_logp_v.device)

        def tail(x: Tensor | None) -> Tensor | None:
            return None if x is None else torch.where(support, outside, x.detach()).logsumexp(-1, keepdim=True)

        tail_adv = vocab_advantages(tail(student_logp_v), tail(teacher_logp_v), tail(ref_logp_v), alpha=alpha,
                                    pressure=pressure, correct=correct, clip=clip)  # the same rule, support=None
        has_tail = ~support.all(-1, keepdim=True)  # no tail (k >= V): -inf - -inf is nan, never used
        tail_adv = torch.where(has_tail, tail_adv, torch.zeros((), dtype=adv_v.dtype, device=adv_v.device))
        return torch.where(support, adv_v, tail_adv)


def target_logp(teacher_logp_v: Tensor, ref_logp_v: Tensor | None, *, alpha: float) -> Tensor:
    """Log of G-OPD's optimum ``pi* ∝ pi_ref * (pi_T / pi_ref)^alpha`` over the last dimension ``[..., V]``.

    The distribution the full estimator at ``pressure='full'`` pulls the student toward (its
    gradient is the reverse KL's to ``pi*``): where a run converges to, if it converges.
    ``ref_logp_v`` may be ``None`` only when ``alpha == 1`` (then ``pi* = pi_T``).
    """
    _check_alpha(alpha)
    _check_same("ref_logp_v", ref_logp_v, teacher_logp_v, "teacher_logp_v")
    if ref_logp_v is None and alpha != 1:
        raise ValueError(f"ref_logp_v is required when alpha != 1 (got alpha={alpha}); only alpha=1 ignores the reference")
    dtype = torch.promote_types(teacher_logp_v.dtype, torch.float32)  # bf16 log-probs: normalise in fp32
    q = teacher_logp_v.detach().to(dtype)
    if ref_logp_v is None or alpha == 1:
        return torch.log_softmax(q, dim=-1)
    r = ref_logp_v.detach().to(dtype)
    return torch.log_softmax(r + alpha * (q - r), dim=-1)


def vocab_opd_loss_terms(logp_theta_v: Tensor, adv_v: Tensor) -> Tensor:
    """Per-position loss ``-sum_v pi_theta(v) * A(v)`` ``[...]``; the gradient flows through ``logp_theta_v``."""
    _check_same("adv_v", adv_v, logp_theta_v)
    return -(logp_theta_v.exp() * adv_v.detach()).sum(-1)


def vocab_opd_logit_grad(logp_theta_v: Tensor, adv_v: Tensor) -> Tensor:
    """d/d logits of ``vocab_opd_loss_terms``: ``-p * (A - E_p[A])`` ``[..., V]`` (no autograd).

    The fused scoring path (gopd.vocab) uses it to form the gradient in the forward pass.
    """
    _check_same("adv_v", adv_v, logp_theta_v)
    p = logp_theta_v.detach().exp()
    pa = p * adv_v
    return pa.sum(-1, keepdim=True).mul(p).sub_(pa)


def vocab_diagnostic_terms(student_logp_v: Tensor, teacher_logp_v: Tensor, ref_logp_v: Tensor | None,
                           adv_v: Tensor) -> dict[str, Tensor]:
    """Per-position full-vocabulary diagnostics ``[...]``, each a ``pi``-weighted sum over entries.

    ``pi = exp(student_logp_v)`` (the student at theta = theta_old). Reduce with a mean over real
    tokens, except ``max_shock`` (a max): see ``gopd.vocab.vocab_opd_loss`` for the metric names.

    - ``pos_mass``  sum_v pi(v) max(A(v), 0);  ``neg_mass`` sum_v pi(v) max(-A(v), 0)
    - ``pos_frac``  sum_v pi(v) [A(v) > 0]: the probability mass the update pushes up
    - ``teacher_kl`` sum_v pi(v) (s - q) = KL(pi || pi_T), exact; ``ref_kl`` KL(pi || pi_ref)
    - ``shock``     sum_v pi(v) |q - s|: the expected size of the per-token disagreement whose
      sampled value is the token estimator's ``|q_t - s_t|``. (``max_v |q - s|`` would be set by
      tail entries of ~1e-10 probability the student never samples, so it is not used.)
    """
    with torch.no_grad():
        p = student_logp_v.exp()
        gap = teacher_logp_v - student_logp_v
        out = {
            "pos_mass": (p * adv_v.clamp_min(0)).sum(-1),
            "neg_mass": (p * (-adv_v).clamp_min(0)).sum(-1),
            "pos_frac": torch.where(adv_v > 0, p, torch.zeros((), dtype=p.dtype, device=p.device)).sum(-1),
            "teacher_kl": -(p * gap).sum(-1),
            "shock": (p * gap.abs()).sum(-1),
        }
        if ref_logp_v is not None:
            out["ref_kl"] = (p * (student_logp_v - ref_logp_v)).sum(-1)
        return out
