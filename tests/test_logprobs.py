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
