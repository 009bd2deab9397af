"""Chunked sampled-token log-probs equal the naive full log-softmax."""

import pytest
import torch

from gopd.logprobs import token_logprobs, token_logprobs_from_hidden


def naive(logits, targets):
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1000])
def test_chunked_equals_naive_fp32(chunk):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 11, 97, generator=g) * 4
    targets = torch.randint(0, 97, (3, 11), generator=g)
    assert torch.allclose(token_logprobs(logits, targets, chunk_size=chunk), naive(logits, targets), atol=1e-5)


def test_bf16_logits_are_upcast():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 5, 300, generator=g) * 3).bfloat16()
    targets = torch.randint(0, 300, (2, 5), generator=g)
    out = token_logprobs(logits, targets, chunk_size=4)
    assert out.dtype == torch.float32
    assert torch.allclose(out, naive(logits, targets), atol=1e-5)


def test_gradient_matches_naive():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(2, 6, 50, generator=g)
    targets = torch.randint(0, 50, (2, 6), generator=g)
    a, b = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    token_logprobs(a, targets, chunk_size=5).sum().backward()
    naive(b, targets).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_from_hidden_equals_naive_with_gradients(temperature):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 9, 16, generator=g)
    weight = torch.randn(40, 16, generator=g) * 0.3
    targets = torch.randint(0, 40, (2, 9), generator=g)
    h1, w1 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    h2, w2 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    out = token_logprobs_from_hidden(h1, w1, targets, temperature=temperature, chunk_size=4)
    ref = naive((h2 @ w2.T) / temperature, targets)
    assert torch.allclose(out, ref, atol=1e-5)
    out.sum().backward()
    ref.sum().backward()
    assert torch.allclose(h1.grad, h2.grad, atol=1e-5) and torch.allclose(w1.grad, w2.grad, atol=1e-5)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="targets"):
        token_logprobs(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def checkpointed(hidden, weight, targets, bias=None, temperature=1.0, chunk=4):
    """The previous implementation: each chunk's ``linear`` + ``log_softmax`` under checkpoint."""
    from torch.utils.checkpoint import checkpoint

    def part(h, t):
        z = torch.nn.functional.linear(h, weight, bias)
        if temperature != 1.0:
            z = z / temperature
        return naive(z, t)

    flat, tgt = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    parts = [checkpoint(part, flat[i : i + chunk], tgt[i : i + chunk], use_reentrant=False)
             for i in range(0, flat.shape[0], chunk)]
    return torch.cat(parts).reshape(targets.shape)


def _leaves(*xs):
    return [x.clone().requires_grad_(True) for x in xs]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_from_hidden_is_bitwise_the_checkpointed_path_in_fp32(temperature):
    """Same kernels in the same order: values and both gradients equal to the last bit, with a
    tied weight (looked up as input embeddings first, as in a model) and a short last chunk."""
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(3, 7, 32, generator=g)
    weight = torch.randn(500, 32, generator=g) * 0.2
    targets = torch.randint(0, 500, (3, 7), generator=g)
    upstream = torch.randn(3, 7, generator=g)
    ids = torch.randint(0, 500, (5,), generator=g)
    grads = []
    for fn in (checkpointed, token_logprobs_from_hidden):
        h, w = _leaves(hidden, weight)
        kw = {"chunk": 4} if fn is checkpointed else {"chunk_size": 4}
        embedded = torch.nn.functional.embedding(ids, w).square().sum()
        out = fn(h, w, targets, temperature=temperature, **kw)
        (embedded + (out * upstream).sum()).backward()
        grads.append((out.detach(), h.grad, w.grad))
    for old, new in zip(*grads):
        assert torch.equal(old, new)


def test_from_hidden_with_bias_and_bf16_autocast_match_the_checkpointed_path():
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(2, 5, 16, generator=g)
    weight = torch.randn(300, 16, generator=g) * 0.3
    bias = torch.randn(300, generator=g) * 0.1
    targets = torch.randint(0, 300, (2, 5), generator=g)
    for autocast in (False, True):
        results = []
        for fn in (checkpointed, token_logprobs_from_hidden):
            h, w, b = _leaves(hidden, weight, bias)
            kw = {"chunk": 3} if fn is checkpointed else {"chunk_size": 3}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = fn(h, w, targets, bias=b, **kw)
            out.sum().backward()
            results.append((out.detach(), h.grad, w.grad, b.grad))
        assert all(x.dtype == torch.float32 for x in results[1])
        for old, new in zip(*results):
            assert torch.allclose(old, new, atol=1e-2 if autocast else 1e-6, rtol=1e-2 if autocast else 1e-5)


def test_from_hidden_with_no_positions_gives_empty_output_and_zero_gradients():
    h, w = _leaves(torch.randn(0, 8), torch.randn(20, 8))
    out = token_logprobs_from_hidden(h, w, torch.zeros(0, dtype=torch.long))
    assert out.shape == (0,)
    out.sum().backward()
    assert h.grad.shape == (0, 8) and torch.equal(w.grad, torch.zeros(20, 8))


def test_head_log_softmax_is_bitwise_linear_then_log_softmax_and_reuses_its_buffers():
    from gopd.logprobs import HeadLogSoftmax

    g = torch.Generator().manual_seed(6)
    weight = torch.randn(400, 24, generator=g)
    bias = torch.randn(400, generator=g)
    head = HeadLogSoftmax()
    for n, b, temperature in ((9, None, 1.0), (9, bias, 0.6), (4, None, 1.3), (12, bias, 1.0)):
        h = torch.randn(n, 24, generator=g)
        out = head(h, weight, b, temperature)
        want = torch.log_softmax(torch.nn.functional.linear(h, weight, b) / temperature, dim=-1)
        assert out.shape == (n, 400) and torch.equal(out, want)
    first = head(torch.randn(3, 24, generator=g), weight)
    kept = first.clone()
    head(torch.randn(3, 24, generator=g), weight)
    assert not torch.equal(first, kept)  # a view of the buffer: the next call overwrites it (documented)
