"""Scoring: packed, left-padded batches give each row's own log-probs."""

import torch

from gopd.pool import load_model
from gopd.scoring import completion_logprobs


def test_batched_scoring_equals_one_row_at_a_time(toy_world_mini):
    model = load_model(str(toy_world_mini / "teacher"))
    g = torch.Generator().manual_seed(0)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    completions = torch.randint(3, 100, (3, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    batched = completion_logprobs(model, prompts, completions, mask, pad_id=0, chunk_size=4)
    for i in range(3):
        n = int(mask[i].sum())
        seq = torch.tensor([prompts[i] + completions[i, :n].tolist()])
        logits = model(input_ids=seq).logits[0, len(prompts[i]) - 1:-1]
        expected = torch.log_softmax(logits, -1).gather(-1, completions[i, :n, None]).squeeze(-1)
        assert torch.allclose(batched[i, :n], expected, atol=1e-5)
        assert (batched[i, n:] == 0).all()


def test_scoring_is_differentiable_for_the_student(toy_world_mini):
    model = load_model(str(toy_world_mini / "student"), trainable=True)
    logp = completion_logprobs(model, [[5, 6]], torch.tensor([[7, 8]]), torch.ones(1, 2), pad_id=0)
    logp.sum().backward()
    assert model.get_output_embeddings().weight.grad is not None
