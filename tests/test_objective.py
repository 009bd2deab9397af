"""The G-OPD objective against hand-computed values and the properties the README's objective implies."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gopd.objective import (
    PRESSURES,
    apply_pressure,
    grpo_advantages,
    kept_scale,
    kept_tokens,
    mix_advantages,
    needs_correct,
    opd_diagnostics,
    policy_loss,
    reweighted_grpo,
    token_advantages,
)

# One rollout of 4 tokens (the last is padding), hand-picked so every pressure mode differs.
S = torch.tensor([[-1.0, -2.0, -0.5, 7.0]])
Q = torch.tensor([[-0.5, -3.0, -0.5, 9.0]])
R = torch.tensor([[-1.5, -2.0, -1.0, 3.0]])
M = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
# delta = alpha * (q - r) - (s - r), alpha = 2:
#   t0: 2 * (1.0) - (0.5)  =  1.5
#   t1: 2 * (-1.0) - (0.0) = -2.0
#   t2: 2 * (0.5) - (0.5)  =  0.5
DELTA_A2 = torch.tensor([[1.5, -2.0, 0.5, 0.0]])


def adv(pressure, **kw):
    kw.setdefault("alpha", 2.0)
    return token_advantages(S, Q, R, M, pressure=pressure, **kw)


# --------------------------------------------------------------------------------- hand-computed


def test_full_pressure_is_delta():
    assert torch.equal(adv("full"), DELTA_A2)


def test_positive_pressure_hand_computed():
    assert torch.equal(adv("positive"), torch.tensor([[1.5, 0.0, 0.5, 0.0]]))


def test_negative_pressure_hand_computed():
    assert torch.equal(adv("negative"), torch.tensor([[0.0, -2.0, 0.0, 0.0]]))


def test_flip_correct_pressure_hand_computed():
    assert torch.equal(adv("flip_correct", correct=torch.tensor([True])), torch.tensor([[1.5, 2.0, 0.5, 0.0]]))
    assert torch.equal(adv("flip_correct", correct=torch.tensor([False])), torch.tensor([[1.5, 0.0, 0.5, 0.0]]))


@pytest.mark.parametrize(
    "pressure,expected",
    [
        ("full", [[1.0, -1.0, 0.5, 0.0]]),
        ("positive", [[1.0, 0.0, 0.5, 0.0]]),
        ("negative", [[0.0, -1.0, 0.0, 0.0]]),
        ("flip_correct", [[1.0, 1.0, 0.5, 0.0]]),
    ],
)
def test_clip_applies_after_pressure(pressure, expected):
    out = adv(pressure, clip=1.0, correct=torch.tensor([True]))
    assert torch.equal(out, torch.tensor(expected))


def test_alpha_one_is_standard_opd_hand_computed():
    # alpha = 1: delta = q - s = [0.5, -1.0, 0.0]
    out = token_advantages(S, Q, R, M, alpha=1.0, pressure="full")
    assert torch.equal(out, torch.tensor([[0.5, -1.0, 0.0, 0.0]]))


def test_alpha_below_one_interpolates_toward_reference():
    # alpha = 0.5: delta = 0.5 * (q - r) - (s - r) -> [0.0, -0.5, -0.25]
    out = token_advantages(S, Q, R, M, alpha=0.5, pressure="full")
    assert torch.allclose(out, torch.tensor([[0.0, -0.5, -0.25, 0.0]]))


# ------------------------------------------------------------------------------------ properties


def rand_batch(b=5, t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    s, q, r = (-torch.rand(b, t, generator=g) * 5 for _ in range(3))
    mask = (torch.rand(b, t, generator=g) > 0.3).float()
    return s, q, r, mask


@pytest.mark.parametrize("pressure", PRESSURES)
def test_alpha_one_ignores_reference(pressure):
    s, q, r, m = rand_batch()
    correct = torch.tensor([True, False, True, False, True])
    a = token_advantages(s, q, r, m, alpha=1.0, pressure=pressure, correct=correct)
    b = token_advantages(s, q, r * 3 - 10, m, alpha=1.0, pressure=pressure, correct=correct)
    c = token_advantages(s, q, None, m, alpha=1.0, pressure=pressure, correct=correct)
    assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("pressure", PRESSURES)
def test_reference_equal_teacher_makes_alpha_inert(pressure):
    s, q, _, m = rand_batch()
    correct = torch.tensor([True, False, True, False, True])
    outs = [token_advantages(s, q, q, m, alpha=a, pressure=pressure, correct=correct) for a in (0.3, 1.0, 2.0, 7.0)]
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_positive_never_negative_and_negative_never_positive():
    s, q, r, m = rand_batch(8, 16)
    assert (token_advantages(s, q, r, m, alpha=1.7, pressure="positive") >= 0).all()
    assert (token_advantages(s, q, r, m, alpha=1.7, pressure="negative") <= 0).all()


def test_flip_correct_is_positive_on_wrong_and_abs_delta_on_correct():
    s, q, r, m = rand_batch()
    correct = torch.tensor([True, False, True, False, False])
    rev = token_advantages(s, q, r, m, alpha=1.5, pressure="flip_correct", correct=correct)
    pos = token_advantages(s, q, r, m, alpha=1.5, pressure="positive")
    full = token_advantages(s, q, r, m, alpha=1.5, pressure="full")
    assert torch.equal(rev[~correct], pos[~correct])
    assert torch.allclose(rev[correct], full[correct].abs())


@pytest.mark.parametrize("pressure", PRESSURES)
def test_masked_positions_are_exactly_zero_even_with_nonfinite_padding(pressure):
    s, q, r, m = rand_batch()
    pad = m == 0
    s, q = s.masked_fill(pad, float("nan")), q.masked_fill(pad, -float("inf"))
    out = token_advantages(s, q, r, m, alpha=2.0, pressure=pressure, correct=torch.ones(5, dtype=torch.bool))
    assert torch.isfinite(out).all()
    assert (out[pad] == 0).all()


def test_student_equal_teacher_alpha_one_gives_zero():
    s, _, r, m = rand_batch()
    for p in PRESSURES:
        out = token_advantages(s, s.clone(), r, m, alpha=1.0, pressure=p, correct=torch.ones(5, dtype=torch.bool))
        assert (out == 0).all()


def test_advantages_carry_no_gradient():
    s, q, r, m = rand_batch()
    q.requires_grad_(True)
    out = token_advantages(s, q, r, m, alpha=2.0, pressure="full")
    assert not out.requires_grad


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 6),
    t=st.integers(1, 9),
    alpha=st.floats(0.05, 8.0),
    seed=st.integers(0, 10_000),
    pressure=st.sampled_from(PRESSURES),
)
def test_property_matches_reference_formula(b, t, alpha, seed, pressure):
    g = torch.Generator().manual_seed(seed)
    s, q, r = (-torch.rand(b, t, generator=g, dtype=torch.float64) * 6 for _ in range(3))
    m = (torch.rand(b, t, generator=g) > 0.4).double()
    correct = torch.rand(b, generator=g) > 0.5
    out = token_advantages(s, q, r, m, alpha=alpha, pressure=pressure, correct=correct)
    delta = alpha * (q - r) - (s - r)
    expected = {
        "full": delta,
        "positive": delta.clamp_min(0),
        "negative": delta.clamp_max(0),
        "flip_correct": delta.clamp_min(0) + correct.double()[:, None] * delta.clamp_max(0).abs(),
    }[pressure] * m
    assert torch.allclose(out, expected, atol=1e-12)


# ------------------------------------------------------------------------------------------ GRPO


def test_grpo_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    out = grpo_advantages(rewards, groups)
    # group 0: mean 1/3, unbiased std = sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = sqrt(1/3)
    std = math.sqrt(1 / 3)
    expected = torch.tensor([(2 / 3) / (std + 1e-6), (-1 / 3) / (std + 1e-6), (-1 / 3) / (std + 1e-6), 0, 0, 0])
    assert torch.allclose(out, expected, atol=1e-6)


def test_grpo_without_std_scaling():
    out = grpo_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([3, 3, 3, 3]), scale=False)
    assert torch.allclose(out, torch.tensor([0.5, -0.5, 0.5, -0.5]))


def test_grpo_all_equal_group_is_zero_and_ids_need_not_be_sorted():
    rewards = torch.tensor([0.3, 1.0, 0.3, 0.0, 0.3])
    groups = torch.tensor([7, 2, 7, 2, 7])
    out = grpo_advantages(rewards, groups)
    assert (out[groups == 7] == 0).all()
    assert out[1] > 0 > out[3]


def test_grpo_singleton_group_is_zero():
    out = grpo_advantages(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 1, 1]))
    assert out[0] == 0 and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------- mix


def test_mix_endpoints_and_midpoint():
    opd = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]])
    g = torch.tensor([10.0, -10.0])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert torch.equal(mix_advantages(opd, g, 0.0, m), opd * m)
    assert torch.equal(mix_advantages(opd, g, 1.0, m), torch.tensor([[10.0, 10.0, 0.0], [-10.0, -10.0, -10.0]]))
    half = mix_advantages(opd, g, 0.25, m)
    assert torch.allclose(half, torch.tensor([[3.25, 4.0, 0.0], [-3.25, -2.5, 0.5]]))


def test_mix_one_ignores_teacher_even_if_nan():
    opd = torch.full((2, 3), float("nan"))
    out = mix_advantages(opd, torch.tensor([1.0, -1.0]), 1.0, torch.ones(2, 3))
    assert torch.equal(out, torch.tensor([[1.0] * 3, [-1.0] * 3]))


# -------------------------------------------------------------------------------------- the loss


def test_policy_loss_gradient_at_old_policy_is_minus_advantage_over_tokens():
    s, _, _, m = rand_batch()
    a = torch.randn(5, 7)
    logp = s.clone().requires_grad_(True)
    loss = policy_loss(logp, s, a, m)
    loss.backward()
    n = m.sum()
    assert torch.allclose(logp.grad, -a * m / n, atol=1e-7)
    assert torch.allclose(loss, -(a * m).sum() / n)


@pytest.mark.parametrize(
    "log_ratio,advantage,grad_flows",
    [
        (math.log(1.5), 1.0, False),  # A > 0, rho > 1 + eps_high: clipped, no gradient
        (math.log(0.5), 1.0, True),  # A > 0, rho < 1 - eps_low: unclipped side
        (math.log(0.5), -1.0, False),  # A < 0, rho < 1 - eps_low: clipped
        (math.log(1.5), -1.0, True),  # A < 0, rho > 1 + eps_high: unclipped side
        (math.log(1.1), 1.0, True),  # inside the trust region
    ],
)
def test_policy_loss_clip_side(log_ratio, advantage, grad_flows):
    old = torch.tensor([[-1.0]])
    logp = (old + log_ratio).requires_grad_(True)
    policy_loss(logp, old, torch.tensor([[advantage]]), torch.ones(1, 1), eps_low=0.2, eps_high=0.2).backward()
    assert (logp.grad.abs().item() > 0) == grad_flows


def test_policy_loss_asymmetric_eps():
    old = torch.tensor([[-1.0]])
    logp = (old + math.log(1.25)).requires_grad_(True)
    # eps_high=0.28 (DAPO's clip-higher) keeps rho=1.25 inside the region for A > 0
    policy_loss(logp, old, torch.tensor([[1.0]]), torch.ones(1, 1), eps_high=0.28).backward()
    assert logp.grad.abs().item() > 0


def test_policy_loss_truncated_importance_weight():
    old = torch.tensor([[-1.0, -1.0]])
    rollout = torch.tensor([[-1.5, -4.0]])  # w = exp(0.5) and exp(3) -> capped at 5
    logp = old.clone().requires_grad_(True)
    loss = policy_loss(logp, old, torch.ones(1, 2), torch.ones(1, 2), rollout_logp=rollout, tis_cap=5.0)
    assert torch.allclose(loss, -(torch.tensor(math.exp(0.5)) + 5.0) / 2)


def test_policy_loss_ignores_masked_nonfinite():
    logp = torch.tensor([[-1.0, float("nan")]], requires_grad=True)
    loss = policy_loss(logp, torch.tensor([[-1.0, -float("inf")]]), torch.tensor([[2.0, float("nan")]]),
                       torch.tensor([[1.0, 0.0]]))
    loss.backward()
    assert loss.item() == -2.0 and torch.isfinite(logp.grad).all()


# ----------------------------------------------------------------------------------- diagnostics


def test_diagnostics_hand_computed():
    s = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, 0.0]])
    q = torch.tensor([[-0.5, -3.0, -0.5], [-2.0, -1.0, 0.0]])
    r = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    a = token_advantages(s, q, r, m, alpha=1.0, pressure="full")  # [[.5,-1,0],[-1,0,0]]
    g = torch.tensor([1.0, 1.0])
    d = opd_diagnostics(s, q, r, m, a, g, torch.tensor([0, 1]))
    assert d["opd/pos_mass"] == pytest.approx(0.5 / 5)
    assert d["opd/neg_mass"] == pytest.approx(2.0 / 5)
    assert d["opd/pos_frac"] == pytest.approx(1 / 5)
    assert d["opd/teacher_kl"] == pytest.approx((-0.5 + 1.0 + 0.0 + 1.0 + 0.0) / 5)
    assert d["opd/ref_kl"] == pytest.approx((0.0 - 1.0 + 0.5 + 0.0 + 0.0) / 5)
    assert d["opd/max_shock"] == pytest.approx(1.0)
    assert d["grpo/zero_std_frac"] == 0.0
    # rollout 0 sums to -0.5 (disagrees with +1), rollout 1 to -1 (disagrees)
    assert d["mix/sign_agreement"] == 0.0


def test_diagnostics_zero_std_groups():
    g = grpo_advantages(torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.tensor([0, 0, 1, 1]))
    s = torch.zeros(4, 2)
    d = opd_diagnostics(s, None, None, torch.ones(4, 2), None, g, torch.tensor([0, 0, 1, 1]))
    assert d["grpo/zero_std_frac"] == 0.5
    assert "opd/pos_mass" not in d and "mix/sign_agreement" not in d


# ----------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": 0.0, "pressure": "full"}, "alpha"),
        ({"alpha": -1.0, "pressure": "full"}, "alpha"),
        ({"alpha": float("nan"), "pressure": "full"}, "alpha"),
        ({"alpha": "2", "pressure": "full"}, "alpha"),
        ({"alpha": 1.0, "pressure": "positiv"}, "pressure must be one of full, positive, negative, flip_correct"),
        ({"alpha": 1.0, "pressure": "flip_correct"}, "correct"),
        ({"alpha": 1.0, "pressure": "full", "clip": 0.0}, "clip"),
    ],
)
def test_token_advantages_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        token_advantages(S, Q, R, M, **kwargs)


def test_shape_mismatch_names_the_argument():
    with pytest.raises(ValueError, match="teacher_logp"):
        token_advantages(S, Q[:, :2], R, M, alpha=1.0, pressure="full")
    with pytest.raises(ValueError, match="correct"):
        token_advantages(S, Q, R, M, alpha=1.0, pressure="flip_correct", correct=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="ref_logp is required"):
        token_advantages(S, Q, None, M, alpha=2.0, pressure="full")


@pytest.mark.parametrize("m", [-0.1, 1.5, float("nan"), True])
def test_mix_rejects_out_of_range(m):
    with pytest.raises(ValueError, match=r"grpo_mix must be a number in \[0, 1\]"):
        mix_advantages(torch.zeros(1, 2), torch.zeros(1), m, torch.ones(1, 2))


def test_grpo_rejects_mismatched_groups():
    with pytest.raises(ValueError, match="group_ids"):
        grpo_advantages(torch.zeros(3), torch.zeros(2, dtype=torch.long))


# ------------------------------------------------------------------------ rlrt / rlsd (reweighted GRPO)


def reweighted(mode, grpo, correct, *, lam=0.5, eps_w=1.0, alpha=1.0, **kw):
    s, q, r, m = (x.expand(len(grpo), -1) for x in (S, Q, R, M))
    return reweighted_grpo(s, q, r, m, torch.tensor(grpo), alpha=alpha, mode=mode, correct=torch.tensor(correct),
                           lam=lam, eps_w=eps_w, **kw)


def test_rlrt_hand_computed():
    # alpha = 1: s - q = [-0.5, 1.0, 0.0]; correct rollout, G = 1: w = clip(exp(s - q), 0, 2) = [e^-0.5, 2 (capped), 1]
    # A = G (0.5 + 0.5 w) = [0.5 + 0.5 e^-0.5, 1.5, 1.0]; the wrong rollout (G = -1) keeps G on every token
    out = reweighted("rlrt", [1.0, -1.0], [True, False])
    expected = torch.tensor([[0.5 + 0.5 * math.exp(-0.5), 1.5, 1.0, 0.0], [-1.0, -1.0, -1.0, 0.0]])
    assert torch.allclose(out, expected, atol=1e-7)


def test_rlsd_hand_computed():
    # rlsd, lam = 1, eps_w = 0.2: w = clip(exp(sign(G) (q - s)), 0.8, 1.2), on every rollout
    # G = 1:  q - s = [0.5, -1.0, 0.0] -> exp = [1.649, 0.368, 1] -> [1.2, 0.8, 1.0]
    # G = -1: -(q - s) = [-0.5, 1.0, 0.0] -> exp = [0.607, 2.718, 1] -> [0.8, 1.2, 1.0], times G
    out = reweighted("rlsd", [1.0, -1.0], [True, False], lam=1.0, eps_w=0.2)
    assert torch.allclose(out, torch.tensor([[1.2, 0.8, 1.0, 0.0], [-0.8, -1.2, -1.0, 0.0]]), atol=1e-7)


def _reweighted_by_loops(s, q, m, grpo, correct, mode, lam, eps_w):
    """An independent re-implementation, one token at a time, from the rule as the papers write it."""
    out = torch.zeros_like(s)
    for i in range(s.shape[0]):
        g = float(grpo[i])
        sign = (g > 0) - (g < 0)
        for t in range(s.shape[1]):
            if not m[i, t]:
                continue
            gap = float(s[i, t] - q[i, t]) if mode == "rlrt" else float(q[i, t] - s[i, t])
            w = min(max(math.exp(sign * gap), max(0.0, 1.0 - eps_w)), 1.0 + eps_w)
            gated = bool(correct[i]) if mode == "rlrt" else True
            out[i, t] = g * ((1 - lam) + lam * w) if gated else g
    return out


@pytest.mark.parametrize("mode", ["rlrt", "rlsd"])
@pytest.mark.parametrize("lam,eps_w", [(0.5, 1.0), (1.0, 0.2), (0.3, 0.5)])
def test_reweighted_grpo_matches_a_token_by_token_reimplementation(mode, lam, eps_w):
    s, q, _, m = rand_batch(6, 9, seed=3)
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])  # group 1 all right: G = 0
    grpo = grpo_advantages(rewards, groups)
    out = reweighted_grpo(s, q, None, m, grpo, alpha=1.0, mode=mode, correct=rewards > 0.5, lam=lam, eps_w=eps_w)
    assert torch.allclose(out, _reweighted_by_loops(s, q, m, grpo, rewards > 0.5, mode, lam, eps_w), atol=1e-6)
    assert (out[2:4] == 0).all()  # an all-correct group gives 0
    assert ((out * grpo[:, None]) >= 0).all()  # the weight never flips G's sign


def test_reweighted_grpo_properties():
    s, q, r, m = rand_batch(4, 12, seed=5)
    grpo = torch.tensor([1.2, -0.4, 0.7, -1.5])
    correct = grpo > 0
    plain = torch.where(m.bool(), grpo[:, None].expand(4, 12), torch.zeros(()))
    for mode in ("rlrt", "rlsd"):
        kw = dict(alpha=1.0, mode=mode, correct=correct)
        assert torch.equal(reweighted_grpo(s, q, None, m, grpo, lam=0.0, eps_w=1.0, **kw), plain)  # lam 0: GRPO
        ratio = torch.cat([(reweighted_grpo(student, teacher, None, m, grpo, lam=1.0, eps_w=0.5, **kw) / plain)[m.bool()]
                           for student, teacher in ((s * 40, q), (s, q * 40))])  # huge gaps of either sign
        assert float(ratio.min()) == pytest.approx(0.5) and float(ratio.max()) == pytest.approx(1.5)  # floor, cap
    rlrt = reweighted_grpo(s, q, None, m, grpo, alpha=1.0, mode="rlrt", correct=correct, lam=0.5, eps_w=1.0)
    assert torch.equal(rlrt[~correct], plain[~correct])  # wrong rollouts: exactly G_i
    with_ref = reweighted_grpo(s, q, r, m, grpo, alpha=1.0, mode="rlrt", correct=correct, lam=0.5, eps_w=1.0)
    assert torch.equal(with_ref, rlrt)  # alpha = 1: the reference cancels


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="reversed"), "mode must be one of rlrt, rlsd"), (dict(lam=1.5), "lam must be a number in"),
    (dict(eps_w=0.0), "eps_w must be a number > 0"), (dict(correct=torch.tensor([True, False])), "correct"),
])
def test_reweighted_grpo_rejects_bad_arguments(kwargs, match):
    args = dict(alpha=1.0, mode="rlrt", correct=torch.tensor([True]), lam=0.5, eps_w=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        reweighted_grpo(S, Q, R, M, torch.tensor([1.0]), **args)


def test_kept_normalisation_scales_the_gradient_by_n_over_kept():
    """normalize=kept (a token mean over the kept tokens) is normalize=all scaled by N / N_kept,
    gradient included."""
    s, q, r, m = rand_batch(5, 8, seed=7)
    adv = token_advantages(s, q, r, m, alpha=1.5, pressure="positive")
    n, k = int(m.sum()), kept_tokens(adv, m)
    assert 0 < k < n and k == int(((adv > 0) & m.bool()).sum())
    logp_all, logp_kept = (s.clone().requires_grad_() for _ in range(2))
    loss_all = policy_loss(logp_all, s, adv, m)
    keep = m * (adv != 0)  # OpenTinker's way: the dropped tokens leave the mask
    loss_kept = policy_loss(logp_kept, s, adv, keep)
    (loss_all * kept_scale(n, k)).backward()
    loss_kept.backward()
    assert torch.allclose(logp_all.grad, logp_kept.grad, atol=1e-7) and kept_scale(n, 0) == 1.0


# ------------------------------------------------------------------------- peers' conventions


def test_grpo_scales_and_eps_hand_computed():
    rewards, groups = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1, 1, 1])
    # group 0: mean 0.5, std sqrt(0.5) -> +-0.5 / sqrt(0.5); group 1: mean 0.5, std sqrt(1/3)
    group = grpo_advantages(rewards, groups, scale="group", eps=1e-4)
    assert torch.allclose(group[:2], torch.tensor([0.5, -0.5]) / (math.sqrt(0.5) + 1e-4))
    assert torch.allclose(group[2:], torch.tensor([0.5, 0.5, -0.5, -0.5]) / (math.sqrt(1 / 3) + 1e-4))
    # batch: every reward of the step, mean 0.5, std sqrt(6 * 0.25 / 5) = sqrt(0.3); centred within groups
    batch = grpo_advantages(rewards, groups, scale="batch")
    assert torch.allclose(batch, torch.tensor([0.5, -0.5, 0.5, 0.5, -0.5, -0.5]) / (math.sqrt(0.3) + 1e-6))
    assert torch.allclose(grpo_advantages(rewards, groups, scale="batch", batch_std=2.0),
                          torch.tensor([0.5, -0.5, 0.5, 0.5, -0.5, -0.5]) / (2.0 + 1e-6))  # the step's std from all ranks
    assert torch.equal(grpo_advantages(rewards, groups, scale=True), grpo_advantages(rewards, groups, scale="group"))
    assert torch.equal(grpo_advantages(rewards, groups, scale=False), grpo_advantages(rewards, groups, scale="none"))
    with pytest.raises(ValueError, match="scale must be one of group, batch, none"):
        grpo_advantages(rewards, groups, scale="sequence")


def test_dual_clip_bounds_the_negative_surrogate_hand_computed():
    # ratio e^2 = 7.39 on a negative advantage: PPO-clip gives -7.39 * 1 (min picks the unclipped), dual clip c = 3 gives -3
    logp, old, m = torch.tensor([[2.0, 2.0, 0.1]]), torch.zeros(1, 3), torch.ones(1, 3)
    advantages = torch.tensor([[-1.0, 1.0, -1.0]])
    plain = policy_loss(logp, old, advantages, m)
    dual = policy_loss(logp, old, advantages, m, dual_clip=3.0)
    # tokens: t0 A<0 ratio 7.39 -> surrogate max(-7.39, -3) = -3; t1 A>0 ratio clipped -> 1.2; t2 ratio 1.105 -> -1.105
    assert float(plain) == pytest.approx(-(-math.exp(2.0) + 1.2 - math.exp(0.1)) / 3)
    assert float(dual) == pytest.approx(-(-3.0 + 1.2 - math.exp(0.1)) / 3)
    with pytest.raises(ValueError, match="dual_clip must be a number > 1"):
        policy_loss(logp, old, advantages, m, dual_clip=1.0)


@pytest.mark.parametrize("pressure", PRESSURES)
def test_a_pressure_waits_for_the_verified_answers_exactly_when_its_map_reads_them(pressure):
    """needs_correct decides whether an estimator waits for verification before its vocabulary
    loss; it must name exactly the pressures whose map changes with ``correct``."""
    delta = torch.tensor([[1.0, -2.0], [-0.5, 3.0]])
    verified, unverified = (apply_pressure(delta, pressure, torch.tensor([c, c])) for c in (True, False))
    assert needs_correct(pressure) == (not torch.equal(verified, unverified))
    if needs_correct(pressure):
        with pytest.raises(ValueError, match="correct"):
            apply_pressure(delta, pressure)
