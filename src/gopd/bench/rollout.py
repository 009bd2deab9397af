"""Benchmark: rollout tokens/s of vLLM vs Hugging Face ``generate`` on the toy student.

    python -m gopd.bench.rollout [--variant full] [--threads 1] [--batches 3] [HYDRA OVERRIDES...]
    python -m gopd.bench.rollout rollout.prompts_per_step=32 rollout.max_new_tokens=128

Both engines are built by the training code (``rollout=hf`` and ``rollout=vllm`` of the same
composed config), so they sample the same prompts with the same batch (``prompts_per_step`` x
``n``), ``max_new_tokens`` and sampling parameters, in one process with the same torch threads.
After one warm-up batch each, ``--batches`` batches are timed; tokens are real completion tokens
(EOS included, padding not), so engines whose samples end at different lengths compare fairly.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

CONF = Path(__file__).resolve().parents[3] / "conf"


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def _time(rollout, rows, batches: int) -> dict:
    rollout.sample(rows)  # warm-up: first-call allocations, vLLM's scheduler and caches
    tokens, seconds, length = 0, 0.0, 0.0
    for _ in range(batches):
        t0 = time.perf_counter()
        batch = rollout.sample(rows)
        seconds += time.perf_counter() - t0
        tokens += batch.num_tokens
        length += batch.num_tokens / len(batch.rows)
    return {"tokens_per_s": tokens / seconds, "s_per_batch": seconds / batches, "mean_len": length / batches}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="full", choices=["full", "mini"], help="toy world (mini: the tests' one)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, the same for both engines")
    p.add_argument("--batches", type=int, default=3, help="timed batches per engine, after one warm-up")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml (rollout.*, seed, ...)")
    a = p.parse_args(argv)

    import datasets
    import torch

    from gopd.data import load_split
    from gopd.pool import load_model, load_tokenizer
    from gopd.prompts import PromptBuilder
    from gopd.rollout import build_rollout
    from gopd.run import resolve_paths

    torch.set_num_threads(a.threads)
    datasets.disable_progress_bars()
    base = [f"model.toy_variant={a.variant}", *a.overrides]
    hf_cfg, vllm_cfg = (resolve_paths(_compose(base + [f"rollout={r}"])) for r in ("hf", "vllm"))
    student_path = hf_cfg.model.path
    tokenizer = load_tokenizer(student_path)
    student = load_model(student_path, hf_cfg.model.dtype)
    rows = load_split(hf_cfg.data.path, hf_cfg.data.train_split)
    rows = rows.select(range(hf_cfg.rollout.prompts_per_step)).to_list()
    prompts = PromptBuilder(tokenizer, problem_field=hf_cfg.data.problem_field)

    results = {}
    for name, cfg in (("hf", hf_cfg), ("vllm", vllm_cfg)):
        torch.manual_seed(cfg.seed)
        results[name] = _time(build_rollout(cfg.rollout, student, tokenizer, prompts, model_path=student_path),
                              rows, a.batches)

    r = hf_cfg.rollout
    print(f"rollout throughput, toy student ({a.variant}): {r.prompts_per_step} prompts x n={r.n}, "
          f"max_new_tokens={r.max_new_tokens}, temperature={r.temperature}, top_p={r.top_p}, "
          f"{a.threads} torch thread(s), {a.batches} batches after a warm-up")
    print(f"{'engine':8s}{'tokens/s':>12s}{'s/batch':>10s}{'mean len':>10s}")
    for name, res in results.items():
        print(f"{name:8s}{res['tokens_per_s']:>12.1f}{res['s_per_batch']:>10.3f}{res['mean_len']:>10.1f}")
    print(f"ratio vllm/hf: {results['vllm']['tokens_per_s'] / results['hf']['tokens_per_s']:.2f}x (goal >= 3x)")


if __name__ == "__main__":  # vLLM may start worker processes: the guard keeps them from re-running this
    main()
