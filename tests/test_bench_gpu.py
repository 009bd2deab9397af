"""gopd.bench.gpu: the FLOP count against a hand count, the tokenizer that decodes every id of
a 151,936-token model, and the tiny CPU version of the GPU check run end to end."""

from types import SimpleNamespace

import pytest

from gopd.bench import gpu


def test_forward_flops_by_hand():
    # d=4, 2 query heads x 2 = 4, 1 kv head x 2 = 2, mlp 8, 1 layer, vocab 10; prompt 2 + completion 1 = 3 positions
    # projections per position: q 4x4 + k,v 2 x 4x2 + o 4x4 + mlp 3 x 4x8 = 16 + 16 + 16 + 96 = 144 -> 2 x 144 x 3 = 864
    # attention: QK^T and AV, 2 flops x 4 channels x 6 visible pairs (3 x 4 / 2) each = 48 + 48 = 96
    # LM head at the 1 completion position: 2 x 4 x 10 = 80
    c = SimpleNamespace(hidden_size=4, num_attention_heads=2, head_dim=2, num_key_value_heads=1, intermediate_size=8,
                        num_hidden_layers=1, vocab_size=10)
    assert gpu.forward_flops(c, 2, 1) == 864 + 96 + 80
    c.num_hidden_layers = 3  # the LM head is not per layer
    assert gpu.forward_flops(c, 2, 1) == 3 * (864 + 96) + 80


def test_wide_tokenizer_decodes_every_id_of_the_vocabulary():
    tok = gpu.wide_tokenizer(151_936)
    assert len(tok) == 151_936 and tok.eos_token_id == 151_935 and tok.pad_token_id == 151_933
    assert tok.decode([300, 151_000]) == f"x{300 - 256}x{151_000 - 256}"
    text = tok.apply_chat_template([{"role": "user", "content": "12+34"}], add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and ids[0] == 151_934  # <|im_start|>
    assert all(i < 256 or i >= 151_933 for i in ids)  # bytes and special tokens only: no merge reaches a filler
    with pytest.raises(ValueError, match="vocab_size must be at least 259"):
        gpu.wide_tokenizer(100)


@pytest.mark.slow
def test_tiny_cpu_version_runs_the_real_loop(tmp_path, capsys):
    out = tmp_path / "table.md"
    assert gpu.main(["--tiny", "--steps", "3", "--warmup", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text().strip() == text.strip()
    assert "CPU (tiny version), 2 rank(s), trainer=fsdp" in text and "0.010B-parameter Qwen3" in text
    for stage in ("rollout", "score (", "update (", "step"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {stage}"))
        assert float(row.rsplit("|", 2)[1]) > 0, row
    assert "completion 32" in text or "completion 3" in text  # a random model runs to the token budget
    if "rollout=vllm" in text:  # where vLLM is installed: the engine was synced from the sharded student
        gap = float(text.split("max ")[-1].strip())
        assert gap < 1e-4, gap
