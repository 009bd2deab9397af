"""Full-vocabulary and top-k G-OPD estimators (README, "Configuration": `estimator`).

Pure math on small random logits, then the chunked, fused scoring path of ``gopd.vocab`` on the
miniature toy world against the unchunked autograd reference.
"""

import copy

import pytest
import torch

from gopd.objective import (
    PRESSURES,
    policy_loss,
    target_logp,
    token_advantages,
    topk_support,
    vocab_advantages,
    vocab_diagnostic_terms,
    vocab_opd_logit_grad,
    vocab_opd_loss_terms,
)
from gopd.pool import load_model, load_tokenizer
from gopd.prompts import PromptBuilder
from gopd.rollout import RolloutBatch
from gopd.scoring import Route, Scorer
from gopd.vocab import naive_vocab_opd_loss, vocab_opd_loss


def rand_logp(*shape, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(scale * torch.randn(*shape, generator=g, dtype=torch.float64), -1)


# ------------------------------------------------------------------------------ hand-computed

# One position, four entries, alpha = 2 (the token test's numbers, now as entries of one row):
#   delta = 2 * (q - r) - (s - r) = [1.5, -2.0, 0.5, 0.0]
S = torch.tensor([[-1.0, -2.0, -0.5, -3.0]])
Q = torch.tensor([[-0.5, -3.0, -0.5, -2.0]])
R = torch.tensor([[-1.5, -2.0, -1.0, -1.0]])


@pytest.mark.parametrize("pressure,correct,expected", [
    ("full", None, [1.5, -2.0, 0.5, 0.0]),
    ("positive", None, [1.5, 0.0, 0.5, 0.0]),
    ("negative", None, [0.0, -2.0, 0.0, 0.0]),
    ("flip_correct", True, [1.5, 2.0, 0.5, 0.0]),
    ("flip_correct", False, [1.5, 0.0, 0.5, 0.0]),
])
def test_pressure_modes_per_entry_hand_computed(pressure, correct, expected):
    c = None if correct is None else torch.tensor([correct])
    assert torch.equal(vocab_advantages(S, Q, R, alpha=2.0, pressure=pressure, correct=c), torch.tensor([expected]))


def test_clip_per_entry_after_pressure():
    out = vocab_advantages(S, Q, R, alpha=2.0, pressure="flip_correct", correct=torch.tensor([True]), clip=1.0)
    assert torch.equal(out, torch.tensor([[1.0, 1.0, 0.5, 0.0]]))


def test_flip_correct_uses_each_rollouts_flag():
    s, q, r = (x.expand(2, 3, 4) for x in (S, Q, R))  # [B=2, T=3, V=4]
    out = vocab_advantages(s, q, r, alpha=2.0, pressure="flip_correct", correct=torch.tensor([True, False]))
    assert torch.equal(out[0, 1], torch.tensor([1.5, 2.0, 0.5, 0.0]))
    assert torch.equal(out[1, 2], torch.tensor([1.5, 0.0, 0.5, 0.0]))


def test_loss_terms_and_diagnostics_hand_computed():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    adv = torch.tensor([[1.0, -2.0, 0.5]])
    # -(0.5 * 1 + 0.25 * -2 + 0.25 * 0.5) = -0.125
    assert torch.allclose(vocab_opd_loss_terms(logp, adv), torch.tensor([-0.125]))
    q = torch.log(torch.tensor([[0.25, 0.25, 0.5]]))
    d = vocab_diagnostic_terms(logp, q, q, adv)
    assert torch.allclose(d["pos_mass"], torch.tensor([0.625]))   # 0.5 * 1 + 0.25 * 0.5
    assert torch.allclose(d["neg_mass"], torch.tensor([0.5]))     # 0.25 * 2
    assert torch.allclose(d["pos_frac"], torch.tensor([0.75]))    # entries 0 and 2
    kl = 0.5 * torch.log(torch.tensor(2.0)) + 0.25 * torch.log(torch.tensor(0.5))
    assert torch.allclose(d["teacher_kl"], kl[None]) and torch.allclose(d["ref_kl"], kl[None])
    assert torch.allclose(d["shock"], torch.tensor([0.75]) * torch.log(torch.tensor(2.0)))


def test_topk_support_adds_the_sampled_token_once():
    q = torch.tensor([[0.0, -1.0, -5.0, -2.0, -9.0], [0.0, -1.0, -5.0, -2.0, -9.0]])
    keep = topk_support(q, 2, sampled=torch.tensor([4, 1]))
    assert keep.tolist() == [[True, True, False, False, True], [True, True, False, False, False]]


@pytest.mark.parametrize("bad,match", [
    (dict(alpha=0.0), "alpha"), (dict(pressure="up"), "pressure"), (dict(clip=-1.0), "clip"),
    (dict(pressure="flip_correct"), "correct"), (dict(ref=None), "ref_logp"),
])
def test_vocab_advantages_errors_name_the_argument(bad, match):
    kw = dict(alpha=2.0, pressure="full") | {k: v for k, v in bad.items() if k != "ref"}
    with pytest.raises(ValueError, match=match):
        vocab_advantages(S, Q, bad.get("ref", R), **kw)


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_topk_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k"):
        topk_support(Q, k)


# ------------------------------------------------------------------------------ exactness on random logits


@pytest.mark.parametrize("alpha,reference", [(a, ref) for a in (0.5, 1.0, 2.0, 3.0) for ref in ("separate", "teacher")]
                         + [(1.0, "none")])
def test_full_gradient_is_reverse_kl_to_geometric_mixture(alpha, reference):
    """At theta = theta_old, pressure=full: grad of loss_opd == grad of KL(pi || norm(pi_ref^(1-a) pi_T^a))."""
    logits = (2 * torch.randn(3, 4, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).requires_grad_()
    q = rand_logp(3, 4, 11, seed=2)
    r = {"separate": rand_logp(3, 4, 11, seed=3), "teacher": q, "none": None}[reference]
    logp = torch.log_softmax(logits, -1)
    adv = vocab_advantages(logp, q, r, alpha=alpha, pressure="full")
    (grad,) = torch.autograd.grad(vocab_opd_loss_terms(logp, adv).sum(), logits)

    target = target_logp(q, r, alpha=alpha)
    assert torch.allclose(target, torch.log_softmax(alpha * q + (1 - alpha) * (q if r is None else r), -1), atol=1e-12)
    logp = torch.log_softmax(logits, -1)
    kl = (logp.exp() * (logp - target)).sum(-1).sum()
    (grad_kl,) = torch.autograd.grad(kl, logits)
    assert torch.allclose(grad, grad_kl, atol=1e-12)
    assert torch.allclose(vocab_opd_logit_grad(logp, adv), grad, atol=1e-12)  # the fused path's closed form


def test_target_hand_computed_extrapolation_can_flip_the_teachers_choice():
    """pi* ∝ r (q / r)^2 = q^2 / r: q = (0.6, 0.4), r = (0.9, 0.1) -> (0.4, 1.6) / 2 = (0.2, 0.8)."""
    q, r = torch.tensor([[0.6, 0.4]]).log(), torch.tensor([[0.9, 0.1]]).log()
    assert torch.allclose(target_logp(q, r, alpha=2.0).exp(), torch.tensor([[0.2, 0.8]]), atol=1e-6)
    assert torch.allclose(target_logp(q, r, alpha=1.0).exp(), q.exp(), atol=1e-6)  # OPD: the teacher itself
    assert torch.allclose(target_logp(q, None, alpha=1.0).exp(), q.exp(), atol=1e-6)
    q2, r2 = torch.tensor([[0.8, 0.2]]).log(), torch.tensor([[0.2, 0.8]]).log()
    assert torch.allclose(target_logp(q2, r2, alpha=0.5).exp(), torch.tensor([[0.5, 0.5]]), atol=1e-6)  # sqrt(q r)
    with pytest.raises(ValueError, match="ref_logp_v is required"):
        target_logp(q, None, alpha=2.0)
    with pytest.raises(ValueError, match=r"ref_logp_v has shape \(1, 3\), expected \(1, 2\) like teacher_logp_v"):
        target_logp(q, torch.zeros(1, 3), alpha=2.0)


@pytest.mark.parametrize("pressure", PRESSURES)
def test_topk_with_k_equal_vocab_is_full(pressure):
    s, q, r = rand_logp(2, 5, 9, seed=4), rand_logp(2, 5, 9, seed=5), rand_logp(2, 5, 9, seed=6)
    sampled = torch.randint(0, 9, (2, 5), generator=torch.Generator().manual_seed(0))
    kw = dict(alpha=1.5, pressure=pressure, correct=torch.tensor([True, False]))
    full = vocab_advantages(s, q, r, **kw)
    for k in (9, 50):
        assert torch.equal(vocab_advantages(s, q, r, support=topk_support(q, k, sampled), **kw), full)
    small = vocab_advantages(s, q, r, support=topk_support(q, 3, sampled), **kw)
    keep = topk_support(q, 3, sampled)
    assert torch.equal(small[keep], full[keep])  # kept entries: the full estimator's A(v), nothing renormalised
    assert not torch.equal(small, full)


def test_topk_tail_bucket_hand_computed():
    """Outside entries share the tail's advantage: delta on the log-mass each model puts outside."""
    p = torch.tensor([[0.5, 0.3, 0.1, 0.1]], dtype=torch.float64)
    t = torch.tensor([[0.7, 0.2, 0.06, 0.04]], dtype=torch.float64)
    s, q = p.log(), t.log()
    support = torch.tensor([[True, True, False, False]])
    adv = vocab_advantages(s, q, None, alpha=1.0, pressure="full", support=support)
    tail = torch.log(torch.tensor(0.10)) - torch.log(torch.tensor(0.20))  # q_tail - s_tail = log .1 - log .2
    expected = torch.tensor([[torch.log(torch.tensor(0.7 / 0.5)), torch.log(torch.tensor(0.2 / 0.3)), tail, tail]],
                            dtype=torch.float64)
    assert torch.allclose(adv, expected, atol=1e-6)
    pos = vocab_advantages(s, q, None, alpha=1.0, pressure="positive", support=support)
    assert (pos[0, 2:] == 0).all() and pos[0, 0] > 0  # the rule applies to the tail like any entry


@pytest.mark.parametrize("alpha,reference", [(1.0, "none"), (2.0, "separate"), (0.5, "separate")])
def test_topk_gradient_is_reverse_kl_over_support_and_tail(alpha, reference):
    """pressure=full at theta_old: grad of the top-k loss == grad of the reverse KL between the
    coarsened distributions (kept entries + one tail bucket), target norm(ref^(1-a) T^a) per bucket.
    The plain restricted sum (A = 0 outside) fails this: it raises outside entries whenever the
    kept entries' mean advantage is negative."""
    g = torch.Generator().manual_seed(7)
    logits = (2 * torch.randn(3, 4, 12, generator=g, dtype=torch.float64)).requires_grad_()
    q = rand_logp(3, 4, 12, seed=8)
    r = None if reference == "none" else rand_logp(3, 4, 12, seed=9)
    sampled = torch.randint(0, 12, (3, 4), generator=g)
    support = topk_support(q, 4, sampled)
    logp = torch.log_softmax(logits, -1)
    adv = vocab_advantages(logp, q, r, alpha=alpha, pressure="full", support=support)
    (grad,) = torch.autograd.grad(vocab_opd_loss_terms(logp, adv).sum(), logits)

    def buckets(x):  # [..., V] log-probs -> kept entries (others -1e4: probability 0) and the tail's log-mass
        none = torch.tensor(-1e4, dtype=x.dtype)
        return torch.where(support, x, none), torch.where(support, none, x).logsumexp(-1, keepdim=True)

    logp = torch.log_softmax(logits, -1)
    (sk, st), (qk, qt) = buckets(logp), buckets(q)
    rk, rt = (qk, qt) if r is None else buckets(r)
    target = torch.log_softmax(torch.cat([alpha * qk + (1 - alpha) * rk, alpha * qt + (1 - alpha) * rt], -1), -1)
    mine = torch.cat([sk, st], -1)
    kl = (mine.exp() * (mine - target)).sum()
    (grad_kl,) = torch.autograd.grad(kl, logits)
    assert torch.allclose(grad, grad_kl, atol=1e-10)
    assert torch.allclose(vocab_opd_logit_grad(logp.detach(), adv), grad, atol=1e-10)


@pytest.mark.parametrize("pressure", PRESSURES)
def test_token_estimator_gradient_in_expectation_is_full(pressure):
    """E_{y ~ pi}[grad of the token policy_loss with A = token_advantages] == grad of the full loss.

    Monte Carlo over 200k sampled rollouts of 3 positions (fixed seed); each rollout is one row of
    the token estimator's batch, all sharing the same logits (the same prefix), so its token-mean
    gradient is the sample mean of the per-token gradients.
    """
    t, v, n = 3, 5, 200_000
    logits = (1.5 * torch.randn(t, v, generator=torch.Generator().manual_seed(7), dtype=torch.float64)).requires_grad_()
    q, r = rand_logp(t, v, seed=8), rand_logp(t, v, seed=9)
    kw = dict(alpha=2.0, pressure=pressure)
    logp = torch.log_softmax(logits, -1)

    correct = torch.tensor([True])
    full = vocab_opd_loss_terms(logp, vocab_advantages(logp, q, r, correct=correct.expand(t), **kw)).mean()
    (g_full,) = torch.autograd.grad(full, logits)

    logp = torch.log_softmax(logits, -1)
    y = torch.multinomial(logp.detach().exp(), n, replacement=True, generator=torch.Generator().manual_seed(10)).T
    pick = lambda x: x.expand(n, t, v).gather(-1, y[..., None]).squeeze(-1)  # noqa: E731  [n, t]
    lp, mask = pick(logp), torch.ones(n, t)
    adv = token_advantages(lp, pick(q), pick(r), mask, correct=correct.expand(n), **kw)
    (g_tok,) = torch.autograd.grad(policy_loss(lp, lp.detach(), adv, mask), logits)
    assert torch.allclose(g_tok, g_full, atol=0.01), (g_tok - g_full).abs().max()
    assert g_full.abs().max() > 0.05  # the comparison is not between two near-zero tensors


def test_positive_pressure_pushes_no_entry_down():
    """Which "never pushes an entry's probability down" holds exactly, and which does not.

    The loss is linear in the probabilities, ``L = -sum_v pi(v) A(v)``, so its gradient is
    ``sum_v (-A(v)) grad pi(v)``: a combination of "raise entry v" directions with coefficient
    ``A(v)``. With ``positive`` every ``A(v) >= 0``: no entry receives a push-down term, where
    ``full`` pushes every entry with ``delta < 0`` down. That is what we pin.

    What does NOT hold: that every probability rises (or stays) after a small step. Through the
    softmax, raising one entry lowers the rest: with ``pi = (0.8, 0.1, 0.1)`` and
    ``A = (1, 1, 0)``, both first entries have the largest advantage, yet the second one's
    probability falls (the first, more probable, takes the mass). Asserted below, so the
    docstring cannot drift from the truth.
    """
    s, q, r = rand_logp(4, 6, 9, seed=11), rand_logp(4, 6, 9, seed=12), rand_logp(4, 6, 9, seed=13)
    pos = vocab_advantages(s, q, r, alpha=2.0, pressure="positive")
    full = vocab_advantages(s, q, r, alpha=2.0, pressure="full")
    assert (pos >= 0).all() and (full < 0).any()
    probs = s.exp().requires_grad_()
    (d_pi,) = torch.autograd.grad(vocab_opd_loss_terms(probs.log(), pos).sum(), probs)
    assert torch.allclose(d_pi, -pos) and (d_pi <= 0).all()

    logits = torch.log(torch.tensor([0.8, 0.1, 0.1], dtype=torch.float64)).requires_grad_()
    adv = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    (g,) = torch.autograd.grad(vocab_opd_loss_terms(torch.log_softmax(logits, -1), adv), logits)
    after = torch.softmax(logits.detach() - 1e-3 * g, -1)
    assert after[1] < 0.1  # a max-advantage entry loses probability: only the push is signed


# ------------------------------------------------------------------------------ the scoring path (toy world)

ROWS = [
    {"problem": "12+34", "hint": "46", "domain": "add"},
    {"problem": "5*6", "hint": "30", "domain": "mul"},
    {"problem": "123+4", "hint": "127", "domain": "add"},
]


@pytest.fixture(scope="module")
def toy(toy_world_mini):
    tok = load_tokenizer(str(toy_world_mini / "student"))
    models = {name: load_model(str(toy_world_mini / name)) for name in ("teacher", "teacher_base", "expert_add", "expert_mul")}
    student = load_model(str(toy_world_mini / "student"), trainable=True)
    plain, hinted = PromptBuilder(tok), PromptBuilder(tok, hint_field="hint")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, student.config.vocab_size, (3, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] * 5 + [0] * 2])
    batch = RolloutBatch(ROWS, plain.batch_ids(ROWS), ids, mask, torch.tensor([0, 0, 1]))
    return dict(tok=tok, student=student, models=models, plain=plain, hinted=hinted, batch=batch)


def scorer(toy, name, prompts="plain"):
    return Scorer({name: Route(toy["models"][name], toy[prompts])})


def experts(toy, swap=False):
    route = {"add": "expert_mul", "mul": "expert_add"} if swap else {"add": "expert_add", "mul": "expert_mul"}
    return Scorer({d: Route(toy["models"][m], toy["plain"]) for d, m in route.items()}, lambda row, i: row["domain"])


def run(fn, toy, teacher, reference, **kw):
    """(loss, metrics, expected_adv, gradients of every student parameter)."""
    student = toy["student"]
    student.zero_grad(set_to_none=True)
    out = fn(student, teacher, reference, toy["batch"], toy["tok"].pad_token_id, **kw)
    out.loss.backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in student.parameters()]
    student.zero_grad(set_to_none=True)
    return out.loss.detach(), out.metrics, out.expected_adv, grads


CASES = {
    "opd": lambda toy: (scorer(toy, "teacher"), None, dict(alpha=1.0)),
    "exopd": lambda toy: (scorer(toy, "teacher", "hinted"), scorer(toy, "teacher_base"), dict(alpha=2.0)),
    "ref_is_teacher": lambda toy: (lambda t: (t, t, dict(alpha=0.5, pressure="positive")))(scorer(toy, "teacher")),
    "experts_topk": lambda toy: (experts(toy), scorer(toy, "teacher_base"),
                                 dict(alpha=1.5, estimator="topk", k=5, pressure="flip_correct", clip=0.7,
                                      correct=torch.tensor([True, False, True]))),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("chunk", [1, 3, 10_000])
def test_chunked_equals_unchunked(toy, case, chunk):
    teacher, reference, kw = CASES[case](toy)
    ref_loss, ref_metrics, ref_exp, ref_grads = run(naive_vocab_opd_loss, toy, teacher, reference, **kw)
    loss, metrics, expected, grads = run(vocab_opd_loss, toy, teacher, reference, chunk_size=chunk, **kw)
    assert torch.allclose(loss, ref_loss, atol=1e-5)
    assert torch.allclose(expected, ref_exp, atol=1e-5)
    assert max((a - b).abs().max().item() for a, b in zip(grads, ref_grads)) < 1e-5
    assert max(g.abs().max().item() for g in grads) > 1e-3
    assert metrics.keys() == ref_metrics.keys() and all(abs(metrics[k] - ref_metrics[k]) < 1e-5 for k in metrics)


def test_topk_with_k_equal_vocab_is_full_on_the_model(toy):
    teacher, reference = scorer(toy, "teacher"), scorer(toy, "teacher_base")
    full = run(vocab_opd_loss, toy, teacher, reference, alpha=2.0, chunk_size=4)
    topk = run(vocab_opd_loss, toy, teacher, reference, alpha=2.0, chunk_size=4, estimator="topk",
               k=toy["student"].config.vocab_size)
    assert torch.equal(full[0], topk[0]) and all(torch.equal(a, b) for a, b in zip(full[3], topk[3]))


def test_domain_experts_score_each_row_with_its_own_expert(toy):
    """Two routes in one batch == each row scored alone by its domain's expert (single route)."""
    batch, pad = toy["batch"], toy["tok"].pad_token_id
    routed = vocab_opd_loss(toy["student"], experts(toy), None, batch, pad, chunk_size=2)
    with torch.no_grad():
        for i, row in enumerate(ROWS):
            one = RolloutBatch([row], [batch.prompt_ids[i]], batch.completion_ids[i : i + 1], batch.mask[i : i + 1],
                               torch.tensor([0]))
            alone = vocab_opd_loss(toy["student"], scorer(toy, f"expert_{row['domain']}"), None, one, pad)
            assert torch.allclose(routed.expected_adv[i], alone.expected_adv[0], atol=1e-6)
        swapped = vocab_opd_loss(toy["student"], experts(toy, swap=True), None, batch, pad)
    assert not torch.allclose(routed.expected_adv, swapped.expected_adv, atol=1e-3)


def test_alpha_one_ignores_reference_and_reference_teacher_ignores_alpha(toy):
    t = scorer(toy, "teacher")
    none = run(vocab_opd_loss, toy, t, None, alpha=1.0)
    base = run(vocab_opd_loss, toy, t, scorer(toy, "teacher_base"), alpha=1.0)
    assert torch.equal(none[0], base[0]) and all(torch.equal(a, b) for a, b in zip(none[3], base[3]))
    a1, a3 = (run(vocab_opd_loss, toy, t, t, alpha=a) for a in (1.0, 3.0))  # reference=teacher: the scorer itself
    assert torch.equal(a1[0], a3[0]) and all(torch.equal(a, b) for a, b in zip(a1[3], a3[3]))


def test_student_as_its_own_teacher_gives_zero(toy):
    same = Scorer({"self": Route(copy.deepcopy(toy["student"]).requires_grad_(False), toy["plain"])})
    loss, metrics, expected, grads = run(vocab_opd_loss, toy, same, None, alpha=1.0)
    assert loss.abs() < 1e-6 and expected.abs().max() < 1e-6 and max(g.abs().max() for g in grads) < 1e-6
    assert abs(metrics["opd/teacher_kl"]) < 1e-6 and "opd/ref_kl" not in metrics


def test_no_grad_gives_the_same_loss_and_metrics(toy):
    teacher, reference = scorer(toy, "teacher"), scorer(toy, "teacher_base")
    with_grad = run(vocab_opd_loss, toy, teacher, reference, alpha=2.0)
    with torch.no_grad():
        out = vocab_opd_loss(toy["student"], teacher, reference, toy["batch"], toy["tok"].pad_token_id, alpha=2.0)
    assert torch.equal(out.loss, with_grad[0]) and out.metrics == with_grad[1]


@pytest.mark.parametrize("kw,match", [
    (dict(estimator="token"), "estimator"), (dict(estimator="topk", k=0), "k"), (dict(chunk_size=0), "chunk_size"),
    (dict(alpha=2.0), "reference"), (dict(pressure="flip_correct"), "correct"), (dict(alpha=-1.0), "alpha"),
])
def test_vocab_opd_loss_errors_name_the_argument(toy, kw, match):
    with pytest.raises(ValueError, match=match):
        vocab_opd_loss(toy["student"], scorer(toy, "teacher"), None, toy["batch"], 0, **kw)
