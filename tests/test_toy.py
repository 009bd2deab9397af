"""The toy world: task data, tokenizer, tiny Qwen2 checkpoints, build cache (on the miniature)."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from gopd.prompts import render_prompt
from gopd.toy import build as B
from gopd.toy.data import COLUMNS, DOMAINS, HINT_FIELDS, TaskSpec, make_dataset, make_row, make_rows
from gopd.verifier import extract_answer, verify

CHECKPOINTS = ("student", "teacher", "teacher_base", "expert_add", "expert_mul")


# ------------------------------------------------------------------------------------- data
def test_rows_are_deterministic_and_seeded():
    a = make_rows(seed=0, n_train=300, n_test=100)
    b = make_rows(seed=0, n_train=300, n_test=100)
    c = make_rows(seed=1, n_train=300, n_test=100)
    assert a == b
    assert a["test"] != c["test"]


def test_splits_are_disjoint_and_deduplicated():
    rows = make_rows(seed=0, n_train=3000, n_test=1000)
    train = [r["problem"] for r in rows["train"]]
    test = [r["problem"] for r in rows["test"]]
    assert len(test) == 1000 and len(train) == 3000
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)
    assert len({r["id"] for r in rows["train"] + rows["test"]}) == 4000
    for split in rows.values():  # both domains, balanced
        counts = {d: sum(r["domain"] == d for r in split) for d in DOMAINS}
        assert max(counts.values()) - min(counts.values()) <= 1


def test_rows_are_correct_and_hints_have_the_promised_strength():
    rows = make_rows(seed=3, n_train=2000, n_test=0)["train"]
    for r in rows:
        assert set(r) == set(COLUMNS)
        a, op, b = r["problem"].partition("+") if r["domain"] == "add" else r["problem"].partition("*")
        assert r["answer"] == str(int(a) + int(b) if op == "+" else int(a) * int(b))
        assert r["solution"].endswith(f"\\boxed{{{r['answer']}}}")
        assert extract_answer(r["solution"]) == r["answer"] and verify(r["solution"], r["answer"])
        assert verify(r["hint_answer"], r["answer"])  # reveals the answer
        assert r["hint_solution"] == r["solution"]
        assert r["answer"] not in r["hint_soft"]  # never reveals it
        assert not any(ch.isdigit() and nxt.isdigit() for ch, nxt in zip(r["hint_soft"], r["hint_soft"][1:]))


def test_worked_solution_format():
    r = make_row("add", 457, 385)
    assert r["problem"] == "457+385"
    assert r["solution"] == "7+5=12a5+8+1=14b4+3+1=8c;c8b4a2 \\boxed{842}"
    assert r["hint_answer"] == "the answer is \\boxed{842}"
    assert r["hint_soft"] == "there are 2 carries"
    m = make_row("mul", 457, 6)
    assert m["solution"] == "7*6=42a5*6+4=34b4*6+3=27c;c27b4a2 \\boxed{2742}"
    assert make_row("add", 999, 1)["solution"] == "9+1=10a9+0+1=10b9+0+1=10c;c10b0a0 \\boxed{1000}"


def test_make_dataset_is_a_dataset_dict(tmp_path):
    ds = make_dataset(seed=0, n_train=50, n_test=20, spec=TaskSpec(add_digits=(2, 2), mul_digits=(2, 2)))
    assert set(ds) == {"train", "test"}
    assert ds["train"].column_names == list(COLUMNS)
    ds["test"].to_parquet(str(tmp_path / "test.parquet"))
    ds["test"].to_json(str(tmp_path / "test.jsonl"))
    from gopd.toy.data import load_split

    assert load_split(tmp_path / "test.parquet").to_list() == ds["test"].to_list()


# -------------------------------------------------------------------------------- tokenizer
TEXTS = [
    "5656+6642\nHint: the answer is \\boxed{12298}",
    "  two  spaces\tand a tab \n\n trailing ",
    "6+2=8a5+4=9b;b9a8 \\boxed{98}",
    "unicode: héllo → ∑ 漢字",
]


def _assert_round_trip(tok):
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text


def test_tokenizer_round_trips_from_its_dir_and_from_a_checkpoint(toy_world_mini):
    from transformers import AutoTokenizer

    from_dir = AutoTokenizer.from_pretrained(str(toy_world_mini / "tokenizer"))
    from_ckpt = AutoTokenizer.from_pretrained(str(toy_world_mini / "student"))  # model_type qwen2 -> Qwen2Tokenizer
    for tok in (from_dir, from_ckpt):
        _assert_round_trip(tok)
        assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
        assert tok.convert_tokens_to_ids("<|im_start|>") != tok.unk_token_id
        assert len(tok) <= 512
    assert from_dir.get_vocab() == from_ckpt.get_vocab()
    for text in TEXTS:
        assert from_dir(text)["input_ids"] == from_ckpt(text)["input_ids"]
    # digits are single tokens (the column arithmetic relies on it)
    ids = from_dir("1234567890", add_special_tokens=False)["input_ids"]
    assert len(ids) == 10


def test_chat_template_renders_student_and_hinted_prompts(toy_world_mini):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(toy_world_mini / "student"))
    assert render_prompt(tok, "12+34") == "<|im_start|>user\n12+34<|im_end|>\n<|im_start|>assistant\n"
    hinted = render_prompt(tok, "12+34", "there is no carry")
    assert hinted == "<|im_start|>user\n12+34\nHint: there is no carry<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(hinted, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == hinted


def test_bpe_is_deterministic():
    from gopd.toy.tokenizer import corpus_texts, learn_bpe

    rows = make_rows(seed=0, n_train=300, n_test=0)["train"]
    assert learn_bpe(corpus_texts(rows), 320) == learn_bpe(corpus_texts(rows), 320)


def test_solutions_are_short_in_tokens(toy_world_mini):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(toy_world_mini / "tokenizer"))
    rows = make_rows(seed=0, n_train=500, n_test=0)["train"]  # the full task (up to 4 digits)
    lengths = [len(tok(r["solution"], add_special_tokens=False)["input_ids"]) + 1 for r in rows]
    assert max(lengths) <= B.EVAL_MAX_NEW_TOKENS - 8


# ------------------------------------------------------------------------------ checkpoints
def test_manifest_has_every_checkpoint_and_field(toy_world_mini):
    m = json.loads((toy_world_mini / "manifest.json").read_text())
    assert m["variant"] == "mini" and toy_world_mini.name == f"mini-{m['recipe_hash']}"
    assert m["data"]["train"] == "data/train.parquet" and (toy_world_mini / m["data"]["test"]).is_file()
    assert m["build_wall_s"] > 0
    assert set(m["checkpoints"]) == set(CHECKPOINTS)
    for name, c in m["checkpoints"].items():
        assert (toy_world_mini / c["path"] / "model.safetensors").is_file()
        assert c["steps"] > 0 and c["recipe"].startswith("sft")
        assert 0.0 <= c["accuracy"] <= 1.0
        assert set(c["accuracy_per_domain"]) == set(DOMAINS)
    student = m["checkpoints"]["student"]
    assert set(student["hinted_accuracy"]) == set(HINT_FIELDS)
    assert 0.4 <= student["hinted_example_share"] <= 0.8
    assert m["checkpoints"]["teacher_base"]["run"] == m["checkpoints"]["teacher"]["run"] == "teacher"
    assert m["checkpoints"]["teacher_base"]["steps"] < m["checkpoints"]["teacher"]["steps"]


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_checkpoints_load_offline_and_generate(toy_world_mini, name):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = toy_world_mini / name
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    cfg = model.config
    assert cfg.model_type == "qwen2" and cfg.tie_word_embeddings
    assert cfg.hidden_size // cfg.num_attention_heads == 64  # vLLM's CPU backend needs head_dim 64
    assert next(model.parameters()).dtype == torch.float32
    assert cfg.vocab_size == len(tok) and cfg.eos_token_id == tok.eos_token_id
    out = B.greedy_generate(model, tok, [render_prompt(tok, "12+34"), render_prompt(tok, "123*4", "there is 1 carry")], max_new_tokens=4)
    assert len(out) == 2


def test_greedy_evaluate_is_batched_and_per_domain(toy_world_mini):
    from gopd.toy.data import load_split
    from gopd.toy.models import load_checkpoint

    model, tok = load_checkpoint(toy_world_mini / "teacher")
    rows = load_split(toy_world_mini / "data" / "test.parquet").to_list()[:6]
    res = B.evaluate(model, tok, rows, "hint_solution", batch_size=4, max_new_tokens=8)
    assert set(res) == {"acc", *(f"acc/{d}" for d in DOMAINS)}
    assert tok.padding_side == "left"


def test_build_is_deterministic(toy_world_mini, tmp_path):
    """Building the miniature again (another directory) gives bit-identical data, tokenizer and weights."""
    from safetensors.torch import load_file

    other = tmp_path / "again"
    B.build(B.get_recipe("mini"), other, progress=False)
    assert (other / "tokenizer" / "tokenizer.json").read_bytes() == (toy_world_mini / "tokenizer" / "tokenizer.json").read_bytes()
    for split in ("train", "test"):
        assert (other / "data" / f"{split}.parquet").read_bytes() == (toy_world_mini / "data" / f"{split}.parquet").read_bytes()
    for name in CHECKPOINTS:
        a, b = load_file(str(other / name / "model.safetensors")), load_file(str(toy_world_mini / name / "model.safetensors"))
        assert a.keys() == b.keys()
        assert all(a[k].equal(b[k]) for k in a), name
    m1 = json.loads((other / "manifest.json").read_text())["checkpoints"]
    m2 = json.loads((toy_world_mini / "manifest.json").read_text())["checkpoints"]
    assert {k: v["accuracy"] for k, v in m1.items()} == {k: v["accuracy"] for k, v in m2.items()}


def test_length_buckets_give_the_same_gradient(toy_world_mini):
    """Splitting a batch by length (less padding) must not change the update."""
    import torch
    import torch.nn.functional as F

    from gopd.toy.data import load_split
    from gopd.toy.models import load_checkpoint

    model, tok = load_checkpoint(toy_world_mini / "student")
    rows = load_split(toy_world_mini / "data" / "train.parquet").to_list()[:32]
    examples = [B.encode_example(tok, r, h) for r, h in zip(rows, ([None] * 7 + ["hint_solution"]) * 4)]
    parts = B._length_buckets(examples)
    assert len(parts) == 2 and sorted(map(str, sum(parts, []))) == sorted(map(str, examples))
    n_tokens = sum(len(c) for _, c in examples)

    def grads(groups):
        model.zero_grad()
        for g in groups:
            ids, att, labels = B._collate(g, tok.pad_token_id)
            logits = model(input_ids=ids, attention_mask=att).logits
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), reduction="sum") / n_tokens
            loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    for x, y in zip(grads([examples]), grads(parts)):
        assert torch.allclose(x, y, atol=1e-6, rtol=1e-4)


def test_completion_loss_covers_only_the_solution_and_eos(toy_world_mini):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(toy_world_mini / "tokenizer"))
    row = make_row("add", 12, 34)
    p, c = B.encode_example(tok, row, "hint_answer")
    assert tok.decode(p) == render_prompt(tok, row["problem"], row["hint_answer"])
    assert tok.decode(c) == row["solution"] + tok.eos_token
    ids, att, labels = B._collate([(p, c)], tok.pad_token_id)
    assert (labels[0, : len(p)] == -100).all() and labels[0, len(p) :].tolist() == c


# ------------------------------------------------------------------------------- schedules
def test_lr_and_hint_schedules():
    spec = B.RunSpec(name="x", seed=0, steps=100, saves={"x": 100}, lr=1.0, warmup=10, min_lr_frac=0.1)
    assert B._lr_at(0, spec) == pytest.approx(0.1) and B._lr_at(9, spec) == pytest.approx(1.0)
    assert B._lr_at(99, spec) == pytest.approx(0.1, abs=1e-3)
    hs = dataclasses.replace(spec, hint_schedule=((0, 1.0), (50, 1.0), (60, 0.0)))
    assert [B._hint_share(hs, s) for s in (0, 50, 55, 60, 99)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    student = next(r for r in B.get_recipe("full").runs if r.name == "student")
    assert 0.45 <= B.mean_hint_share(student) <= 0.7  # "about half" of the student's examples show a hint


def test_example_schedule_is_seeded_and_respects_domains():
    rows = make_rows(seed=0, n_train=200, n_test=0)["train"]
    spec = B.RunSpec(name="x", seed=5, steps=5, saves={"x": 5}, batch_size=8, domain_weights={"mul": 1.0}, hint_frac=0.5)
    s1, s2 = B._example_schedule(spec, rows), B._example_schedule(spec, rows)
    assert s1 == s2 and len(s1) == 5 and all(len(b) == 8 for b in s1)
    assert all(rows[i]["domain"] == "mul" for b in s1 for i, _ in b)
    assert {h for b in s1 for _, h in b} <= {None, *HINT_FIELDS}


def test_full_recipe_is_valid():
    full = B.get_recipe("full")
    assert full.model.hidden_size // full.model.num_heads == 64
    assert sorted(B.checkpoint_names(full)) == sorted(CHECKPOINTS)
    groups = B._partition(full)
    assert len(groups) == full.workers
    bad = dataclasses.replace(full, workers=1, runs=tuple(reversed(full.runs)))  # experts before the teacher
    with pytest.raises(ValueError, match="later in the same lane"):
        B._partition(bad)


# ------------------------------------------------------------------------------------ cache
def test_cache_location_and_resolve_path(toy_world_mini, tmp_path, monkeypatch):
    root = toy_world_mini.parent
    assert B.cache_root(tmp_path) == tmp_path
    monkeypatch.setenv("GOPD_CACHE", str(tmp_path / "c"))
    assert B.cache_root() == tmp_path / "c" / "toy"
    monkeypatch.delenv("GOPD_CACHE")
    assert B.cache_root() == Path.home() / ".cache" / "gopd" / "toy"
    assert B.ensure_toy_world("mini", root) == toy_world_mini  # cached: no rebuild
    assert B.resolve_path("toy://student", "mini", root) == str(toy_world_mini / "student")
    assert B.resolve_path("toy://data", "mini", root) == str(toy_world_mini / "data")
    assert B.resolve_path("toy://", "mini", root) == str(toy_world_mini)
    assert B.resolve_path("Qwen/Qwen3-1.7B", "mini", root) == "Qwen/Qwen3-1.7B"
    with pytest.raises(FileNotFoundError, match="nope"):
        B.resolve_path("toy://nope", "mini", root)


def test_recipe_change_changes_the_cache_key(monkeypatch):
    mini = B.get_recipe("mini")
    h = B.recipe_hash(mini)
    assert B.recipe_hash(dataclasses.replace(mini, n_train=mini.n_train + 1)) != h
    assert B.recipe_hash(B.get_recipe("full")) != h
    monkeypatch.setattr(B, "_lib_versions", lambda: "torch=0.0")
    assert B.recipe_hash(mini) != h  # library versions are part of the key
    with pytest.raises(ValueError, match="unknown toy world variant"):
        B.get_recipe("huge")


def test_full_v1_is_the_full_world_with_the_previous_student_schedule():
    full, v1 = B.get_recipe("full"), B.get_recipe("full_v1")
    student = {r.name: r for r in full.runs}["student"]
    student_v1 = {r.name: r for r in v1.runs}["student"]
    assert student_v1.hint_schedule[0] == (0, 1.0) and student.hint_schedule[-1] == (600, 1.0)  # hints first vs hints last
    assert dataclasses.replace(student_v1, hint_schedule=student.hint_schedule) == student
    assert [r for r in v1.runs if r.name != "student"] == [r for r in full.runs if r.name != "student"]
    assert dataclasses.replace(v1, variant="full", runs=full.runs, notes=full.notes) == full
    assert B.recipe_hash(v1) != B.recipe_hash(full)


def test_source_files_are_part_of_the_cache_key():
    names = {f.name for f in B._source_files()}
    assert {"data.py", "tokenizer.py", "models.py", "build.py", "prompts.py", "verifier.py"} <= names


def test_concurrent_first_use_builds_once(tmp_path, monkeypatch):
    calls = []
    real_build = B.build

    def counting_build(recipe, out, **kw):
        calls.append(out)
        return real_build(recipe, out, **kw)

    monkeypatch.setattr(B, "build", counting_build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(B.ensure_toy_world("mini", tmp_path, progress=False))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2 and results[0] == results[1] and (results[0] / "manifest.json").is_file()
    assert len(calls) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_cli_prints_the_manifest_table(toy_world_mini, capsys):
    assert B.main(["--variant", "mini", "--cache-dir", str(toy_world_mini.parent)]) == 0
    out = capsys.readouterr().out
    assert str(toy_world_mini) in out
    for name in CHECKPOINTS:
        assert name in out


# ---------------------------------------------------------------------------- shipped world
def test_shipped_world_matches_its_checksums():
    """The default world ships with the package: every machine trains from these exact bytes."""
    root = B.shipped_dir("full")
    assert root is not None and root == B.SHIPPED_ROOT / "full"
    listed = {line.split("  ", 1)[1] for line in (root / B.CHECKSUMS).read_text().splitlines()}
    assert {"manifest.json", "tokenizer/tokenizer.json", "data/train.parquet", "data/test.parquet"} <= listed
    assert {f"{name}/model.safetensors" for name in CHECKPOINTS} <= listed
    assert B.checksum_errors(root) == []


def test_shipped_world_is_the_current_full_recipe():
    """A recipe edit without a rebuild (`python -m gopd.toy.build --force --ship`) fails here."""
    shipped = B.load_manifest(B.shipped_dir("full"))
    assert shipped["variant"] == "full"
    assert shipped["recipe"] == json.loads(json.dumps(B.get_recipe("full").as_dict(), default=str))


def test_toy_paths_resolve_to_the_shipped_world_without_a_build(tmp_path, monkeypatch):
    monkeypatch.setenv("GOPD_CACHE", str(tmp_path))
    monkeypatch.setattr(B, "build", lambda *a, **k: pytest.fail("the shipped world must not be built"))
    root = B.SHIPPED_ROOT / "full"
    assert B.ensure_toy_world("full") == root
    assert B.resolve_path("toy://student") == str(root / "student")
    assert B.resolve_path("toy://data") == str(root / "data")
    assert B.shipped_dir("full_v1") is None  # not shipped: built on demand
    assert not list(tmp_path.iterdir())


def test_ship_copies_the_build_with_checksums_and_checksums_catch_every_change(toy_world_mini, tmp_path, monkeypatch):
    monkeypatch.setattr(B, "SHIPPED_ROOT", tmp_path / "worlds")
    dest = B.ship(toy_world_mini)
    assert dest == tmp_path / "worlds" / "mini" == B.shipped_dir("mini") == B.ensure_toy_world("mini", toy_world_mini.parent)
    assert not [p for p in dest.rglob(".*")]  # no build markers
    assert B.checksum_errors(dest) == []
    assert (dest / "student" / "model.safetensors").read_bytes() == (toy_world_mini / "student" / "model.safetensors").read_bytes()
    weights = dest / "teacher" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    (dest / "data" / "test.parquet").unlink()
    (dest / "extra.txt").write_text("x")
    assert B.checksum_errors(dest) == ["missing: data/test.parquet", "not listed: extra.txt", "changed: teacher/model.safetensors"]


@pytest.mark.slow
def test_shipped_manifest_accuracies_reproduce_on_this_machine():
    """Greedy evaluation of the shipped weights gives the manifest's accuracies, up to a few
    near-tie verdicts that another CPU's float order may flip (B.EVAL_TOLERANCE_PROBLEMS)."""
    rows = B.measure_manifest(B.shipped_dir("full"))
    assert len(rows) == len(CHECKPOINTS) + len(HINT_FIELDS)  # + the student under each hint
    off = {(r["checkpoint"], r["hint"]): r["problems_off"] for r in rows}
    assert max(off.values()) <= B.EVAL_TOLERANCE_PROBLEMS, off


def test_world_label_names_the_world_a_path_lies_in(toy_world_mini, tmp_path):
    label = f"mini@{json.loads((toy_world_mini / 'manifest.json').read_text())['recipe_hash']}"
    assert B.world_label(toy_world_mini) == B.world_label(toy_world_mini / "student") == label
    assert B.world_label(toy_world_mini / "data" / "test.parquet") == label
    full = B.load_manifest(B.SHIPPED_ROOT / "full")
    assert B.world_label(B.SHIPPED_ROOT / "full" / "teacher") == f"full@{full['recipe_hash']}"
    assert B.world_label(tmp_path) is None and B.world_label(None) is None and B.world_label("Qwen/Qwen3-1.7B") is None


def test_config_toy_paths_become_plain_paths_once(toy_world_mini):
    """``toy://`` values anywhere in a config (lists and dicts included) become paths in the
    world ``model.toy_variant`` names; other values, interpolations included, stay as written."""
    from omegaconf import OmegaConf

    from gopd.toy.config import resolve_toy_paths, toy_uris

    cfg = OmegaConf.create({"model": {"path": "toy://student", "toy_variant": "mini"},
                            "teacher": {"experts": {"add": "toy://expert_add", "mul": "Qwen/Qwen3-8B"}},
                            "data": {"path": "toy://data"}, "more": ["toy://teacher", 3],
                            "reference": {"path": "${model.path}"}})
    assert [k for k, _ in toy_uris(cfg)] == [("model", "path"), ("teacher", "experts", "add"), ("data", "path"),
                                              ("more", 0)]
    out = resolve_toy_paths(cfg)
    assert out.model.path == str(toy_world_mini / "student") == out.reference.path
    assert out.teacher.experts.add == str(toy_world_mini / "expert_add") and out.teacher.experts.mul == "Qwen/Qwen3-8B"
    assert out.data.path == str(toy_world_mini / "data") and out.more[0] == str(toy_world_mini / "teacher")
    assert cfg.model.path == "toy://student" and toy_uris(out) == []  # the input is left as it was
    cfg.teacher.experts.add = "toy://nope"
    with pytest.raises(ValueError, match=r"^teacher\.experts\.add: toy://nope is not in the toy world 'mini' "
                                         r"\(toy:// names: .*student.*\)$"):
        resolve_toy_paths(cfg)


def test_a_toy_world_supplies_its_pre_rl_base():
    from conftest import compose_train

    from gopd.toy.config import TOY_PRE_RL, with_toy_defaults
    from gopd.validate import ConfigError, check_config

    cfg = compose_train("reference=pre_rl", "alpha=2")
    assert cfg.reference.path is None
    check_config(cfg)  # no path needed on a toy world ...
    assert with_toy_defaults(cfg).reference.path == TOY_PRE_RL and cfg.reference.path is None
    real = compose_train("reference=pre_rl", "alpha=2", "model.path=Qwen/Qwen3-1.7B")
    assert with_toy_defaults(real).reference.path is None
    with pytest.raises(ConfigError, match="reference.path is required for reference=pre_rl"):
        check_config(real)  # ... but with a real student it is
