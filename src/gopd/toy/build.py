"""The toy world: shipped with the package, or built (and cached): data, tokenizer, SFT checkpoints, manifest.

    python -m gopd.toy.build                    # where the world is, and its manifest (no build)
    python -m gopd.toy.build --verify           # check the shipped files' sha256 and re-measure the manifest here
    python -m gopd.toy.build --variant full_v1  # build a variant that is not shipped (into the cache)
    python -m gopd.toy.build --force --ship     # rebuild the default world and ship it (developers)

Shipped: the default world (``full``) lives in ``gopd/toy/worlds/full/`` with a ``SHA256SUMS``
file, so every machine trains from byte-identical files: SFT on another CPU (another vector
instruction set) gives other weights from the same recipe. Other variants are built on first use.

Layout of one artefact directory (``<root>/<variant>-<hash>/``)::

    manifest.json  tokenizer/  data/train.parquet  data/test.parquet
    student/  teacher/  teacher_base/  expert_add/  expert_mul/

Cache (built variants): ``root`` is ``cache_dir`` if given, else ``$GOPD_CACHE/toy`` if ``GOPD_CACHE`` is set,
else ``~/.cache/gopd/toy``. ``hash`` covers the variant's recipe, the source of ``gopd.toy``,
``gopd.prompts`` and ``gopd.verifier``, and the torch/transformers versions, so any change
rebuilds instead of reusing a stale world. A build goes to a temporary sibling directory and
is renamed into place atomically, under a file lock, so concurrent first uses are safe.

Training is a plain torch loop (AdamW, linear warmup then cosine, loss on completion tokens
only), one thread per run, batch order from the run's seed, checkpoints saved by step count:
the same recipe gives bit-identical weights. Independent runs go to parallel processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gopd.paths import file_sha256
from gopd.toy import data as arith
from gopd.toy import search
from gopd.toy.data import HINT_FIELDS, TaskSpec
from gopd.toy.models import ModelSpec
from gopd.toy.search import SearchTaskSpec

EVAL_MAX_NEW_TOKENS = 64
DONE_MARKER = ".complete"
SHIPPED_ROOT = Path(__file__).resolve().parent / "worlds"  # worlds shipped with the package, one folder per variant
CHECKSUMS = "SHA256SUMS"  # `sha256sum -c` format, one line per shipped file
# Greedy verdicts of fixed weights could flip on another CPU where float reduction order decides a near-tie.
# Measured: the shipped world's 8 evaluations (8,000 verdicts) were identical under ATen's AVX512, AVX2 and
# DEFAULT kernels; this allowance (per evaluation of 1000 problems) is for processors not measured (ARM).
EVAL_TOLERANCE_PROBLEMS = 3


# ----------------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class RunSpec:
    """One SFT run. ``steps`` sets the LR and hint schedules; ``saves`` maps checkpoint names to
    the step at which each is saved, and the run stops at the last of them (which may be < steps)."""

    name: str
    seed: int
    steps: int
    saves: dict[str, int]
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    domain_weights: dict[str, float] | None = None  # None: all rows equally likely
    hint_frac: float = 0.0  # share of examples whose prompt shows a hint
    hint_schedule: tuple[tuple[int, float], ...] | None = None  # (step, share) breakpoints, linear in between; overrides hint_frac
    hint_fields: tuple[str, ...] = HINT_FIELDS  # the hint of a hinted example, uniformly (repeat to weight)
    init_from: str | None = None  # start from this checkpoint (saved by another run) instead of a fresh init
    lane: int = 0  # parallel lane (worker = lane % workers); runs of one lane go in recipe order
    model: ModelSpec | None = None  # this run's architecture (None: the recipe's); a stronger teacher is larger
    # search world: (prompt kind, mean, cap) of the failed tries an SFT trace shows; prompt kind is
    # "none" (unhinted) or a hint field; an unlisted kind shows none (gopd.toy.search)
    explore: tuple[tuple[str, float, int], ...] = ()


@dataclass(frozen=True)
class Recipe:
    variant: str
    seed: int
    n_train: int
    n_test: int
    task: TaskSpec | SearchTaskSpec
    model: ModelSpec
    runs: tuple[RunSpec, ...]
    tokenizer_rows: int = 5000
    vocab_size: int = 384
    eval_batch_size: int = 250
    eval_max_new_tokens: int = EVAL_MAX_NEW_TOKENS
    workers: int = 2
    notes: dict[str, str] = field(default_factory=dict)  # checkpoint -> recipe note for the manifest

    def as_dict(self) -> dict:
        d = asdict(self)
        for run in d["runs"]:  # keys added with the search world, left out at their defaults: an
            if run.get("model") is None:  # arithmetic recipe reads (and hashes) as it did when its world shipped
                run.pop("model")
            if not run.get("explore"):
                run.pop("explore")
        return d


@dataclass(frozen=True)
class Task:
    """What the builder needs of a world's task."""

    make_dataset: Callable  # (seed, n_train, n_test, spec) -> datasets.DatasetDict
    hint_fields: tuple[str, ...]
    answer_extract: str  # how its completions are verified (data.answer_extract)
    sampled: bool  # SFT targets drawn per example (search traces) rather than the row's solution
    corpus_hints: tuple[str, ...]  # the hints whose user turns the tokenizer is trained on


TASKS = {TaskSpec: Task(arith.make_dataset, HINT_FIELDS, "boxed", sampled=False,
                        corpus_hints=("hint_answer", "hint_soft")),
         SearchTaskSpec: Task(search.make_dataset, search.HINT_FIELDS, "countdown", sampled=True,
                              corpus_hints=search.HINT_FIELDS)}


def task_of(recipe: Recipe) -> Task:
    return TASKS[type(recipe.task)]


_STUDENT_HINTS = ("hint_answer", "hint_answer", "hint_answer", "hint_solution", "hint_solution", "hint_soft")


def _recipes() -> dict[str, Recipe]:
    notes = {
        "student": "sft, stopped early (weak on purpose); hinted examples (answer:solution:soft = 3:2:1): 25% of the first 250 steps, then all",
        "teacher": "sft (long run; stands in for the RL checkpoint)",
        "teacher_base": "sft (an earlier step of the teacher run; stands in for the teacher's pre-RL base)",
        "expert_add": "sft (teacher_base fine-tuned on add-domain examples only)",
        "expert_mul": "sft (teacher_base fine-tuned on mul-domain examples only)",
    }
    full = Recipe(
        variant="full",
        seed=0,
        n_train=50_000,
        n_test=1000,
        task=TaskSpec(),
        model=ModelSpec(),
        runs=(
            RunSpec(name="teacher", seed=3, steps=800, saves={"teacher_base": 500, "teacher": 800}, lane=0),
            RunSpec(
                name="student",
                seed=2,
                steps=600,  # schedules run over 600 steps; the student is taken at step 525
                saves={"student": 525},
                # Hints last, so the hinted student is sharper than the unhinted one wherever it is right:
                # with 25% hints last instead, G-OPD's alpha=2 optimum of the hinted teacher was worse than the student.
                hint_schedule=((0, 0.25), (250, 0.25), (300, 1.0), (600, 1.0)),
                hint_fields=_STUDENT_HINTS,
                lane=1,
            ),
            RunSpec(name="expert_add", seed=5, steps=150, saves={"expert_add": 150}, lr=2e-3, warmup=20, domain_weights={"add": 1.0}, init_from="teacher_base", lane=1),
            RunSpec(name="expert_mul", seed=6, steps=150, saves={"expert_mul": 150}, lr=2e-3, warmup=20, domain_weights={"mul": 1.0}, init_from="teacher_base", lane=0),
        ),
        workers=2,
        notes=notes,
    )
    mini = Recipe(
        variant="mini",
        seed=0,
        n_train=400,
        n_test=40,
        task=TaskSpec(add_digits=(2, 3), mul_digits=(2, 3)),
        model=ModelSpec(intermediate_size=256),
        runs=(
            RunSpec(name="teacher", seed=1, steps=8, saves={"teacher_base": 4, "teacher": 8}, batch_size=8, warmup=2, lane=0),
            RunSpec(
                name="student",
                seed=2,
                steps=4,
                saves={"student": 4},
                batch_size=8,
                warmup=1,
                hint_schedule=((0, 1.0), (2, 0.2)),
                hint_fields=_STUDENT_HINTS,
                lane=1,
            ),
            RunSpec(name="expert_add", seed=3, steps=3, saves={"expert_add": 3}, batch_size=8, warmup=1, domain_weights={"add": 1.0}, init_from="teacher_base", lane=1),
            RunSpec(name="expert_mul", seed=4, steps=3, saves={"expert_mul": 3}, batch_size=8, warmup=1, domain_weights={"mul": 1.0}, init_from="teacher_base", lane=0),
        ),
        tokenizer_rows=400,
        eval_batch_size=40,
        eval_max_new_tokens=24,
        workers=1,
        notes=notes,
    )
    # The world until 2026-11-24 (its student saw hints first, then 25%): the committed study in results/ ran on it.
    full_v1 = replace(
        full,
        variant="full_v1",
        runs=tuple(
            replace(r, hint_schedule=((0, 1.0), (250, 1.0), (300, 0.25), (600, 0.25))) if r.name == "student" else r
            for r in full.runs
        ),
        notes={**notes, "student": "sft, stopped early (weak on purpose); hinted examples (answer:solution:soft = 3:2:1): all of the first 250 steps, then 25%"},
    )
    return {"full": full, "full_v1": full_v1, "mini": mini, **_search_recipes()}


# Without a hint the student explores (geometric number of failed tries, mean 4, at most 12); a hint
# shortens its search by its strength: the solution ends it, the first step nearly, the structure a little.
_SEARCH_STUDENT_EXPLORE = (("none", 4.0, 12), ("hint_solution", 0.0, 0), ("hint_first_step", 1.0, 4),
                           ("hint_soft", 2.5, 8))
_SEARCH_TEACHER_EXPLORE = (("none", 0.3, 2),)  # the strong teacher searches little


def _search_recipes() -> dict[str, Recipe]:
    notes = {
        "student": "sft on exploring traces (failed tries: mean 4 unhinted; 0 / 1 / 2.5 with the solution / first-step / "
                   "structural hint), stopped early; 2 layers x 128",
        "teacher": "sft on short traces (mean 0.3 failed tries), 4 layers x 128: larger than the student (strong-to-weak); "
                   "stands in for the RL checkpoint",
        "teacher_base": "an earlier step of the teacher run (its pre-RL base)",
        "expert_add": "teacher_base fine-tuned on add-domain problems (a +/- solution exists) only",
        "expert_mul": "teacher_base fine-tuned on mul-domain problems (every solution needs * or /) only",
    }
    student_model = ModelSpec(max_position_embeddings=320)
    teacher_model = ModelSpec(num_layers=4, intermediate_size=512, max_position_embeddings=320)
    hints = ("hint_solution", "hint_first_step", "hint_soft")
    search = Recipe(
        variant="search",
        seed=0,
        n_train=6000,  # 3000 per domain: the add domain has only 4,221 distinct problems
        n_test=400,
        task=SearchTaskSpec(),
        model=student_model,
        runs=(
            RunSpec(name="teacher", seed=3, steps=600, saves={"teacher_base": 300, "teacher": 600}, model=teacher_model,
                    explore=_SEARCH_TEACHER_EXPLORE, lane=0),
            RunSpec(name="student", seed=2, steps=500, saves={"student": 400}, hint_frac=0.5, hint_fields=hints,
                    explore=_SEARCH_STUDENT_EXPLORE, lane=1),
            RunSpec(name="expert_add", seed=5, steps=150, saves={"expert_add": 150}, lr=2e-3, warmup=20,
                    domain_weights={"add": 1.0}, init_from="teacher_base", explore=_SEARCH_TEACHER_EXPLORE, lane=1),
            RunSpec(name="expert_mul", seed=6, steps=150, saves={"expert_mul": 150}, lr=2e-3, warmup=20,
                    domain_weights={"mul": 1.0}, init_from="teacher_base", explore=_SEARCH_TEACHER_EXPLORE, lane=0),
        ),
        eval_max_new_tokens=192,
        workers=2,
        notes=notes,
    )
    mini = replace(
        search,
        variant="search_mini",
        n_train=300,
        n_test=24,
        task=SearchTaskSpec(sizes=(3,)),
        runs=tuple(replace(r, steps=4, saves={k: min(v, 4) if k != "teacher_base" else 2 for k, v in r.saves.items()},
                           batch_size=8, warmup=1, lane=r.lane) for r in search.runs),
        tokenizer_rows=300,
        eval_batch_size=24,
        eval_max_new_tokens=48,
        workers=1,
    )
    return {"search": search, "search_mini": mini}


RECIPES = _recipes()


def get_recipe(variant: str) -> Recipe:
    try:
        return RECIPES[variant]
    except KeyError:
        raise ValueError(f"unknown toy world variant {variant!r}; known: {sorted(RECIPES)}") from None


def checkpoint_names(recipe: Recipe) -> list[str]:
    return [name for run in recipe.runs for name in run.saves]


# ------------------------------------------------------------------------------------ cache
def _source_files() -> list[Path]:
    pkg = Path(__file__).resolve().parent
    files = sorted(pkg.glob("*.py"))
    files += [pkg.parent / "prompts.py", pkg.parent / "verifier.py"]
    return files


def _lib_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("torch", "transformers", "tokenizers", "safetensors"):
        try:
            out.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            out.append(f"{name}=?")
    return " ".join(out)


def recipe_hash(recipe: Recipe) -> str:
    """Hash of the recipe, the toy/prompt/verifier sources and the library versions (no heavy imports)."""
    h = hashlib.sha256()
    h.update(json.dumps(recipe.as_dict(), sort_keys=True, default=str).encode())
    for f in _source_files():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(_lib_versions().encode())
    return h.hexdigest()[:16]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` > ``$GOPD_CACHE/toy`` > ``~/.cache/gopd/toy``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("GOPD_CACHE")
    if env:
        return Path(env).expanduser() / "toy"
    return Path.home() / ".cache" / "gopd" / "toy"


def artefact_dir(variant: str = "full", cache_dir: str | os.PathLike | None = None) -> Path:
    recipe = get_recipe(variant)
    return cache_root(cache_dir) / f"{variant}-{recipe_hash(recipe)}"


def _complete(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def shipped_dir(variant: str) -> Path | None:
    """The copy of ``variant`` shipped with the package, if there is one."""
    path = SHIPPED_ROOT / variant
    return path if _complete(path) else None


def ensure_toy_world(variant: str = "full", cache_dir: str | os.PathLike | None = None, *, force: bool = False, progress: bool = True) -> Path:
    """The directory of ``variant``: the shipped copy if the package has one, else the cached build.

    A shipped world is never rebuilt implicitly (``force`` rebuilds into the cache instead). A
    cached world lives in ``<root>/<variant>-<hash>/`` (``cache_dir``, default ``$GOPD_CACHE/toy``
    or ``~/.cache/gopd/toy``) and is built first if missing (or ``force``); safe under concurrent
    first use (file lock + build in a temporary directory + atomic rename).
    """
    shipped = shipped_dir(variant)
    if shipped is not None and not force:
        return shipped
    return build_in_cache(variant, cache_dir, force=force, progress=progress)


def build_in_cache(variant: str, cache_dir: str | os.PathLike | None = None, *, force: bool = False, progress: bool = True) -> Path:
    """The cached build of ``variant`` (made first if missing, or if ``force``)."""
    final = artefact_dir(variant, cache_dir)
    if _complete(final) and not force:
        return final
    from filelock import FileLock

    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if _complete(final) and not force:
            return final  # another process built it while we waited
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            build(get_recipe(variant), tmp, progress=progress)
            if final.exists():
                old = final.parent / f".old-{final.name}-{os.getpid()}"
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_path(uri: str, variant: str = "full", cache_dir: str | os.PathLike | None = None) -> str:
    """``toy://<name>`` -> that artefact's path (building the world if needed); others unchanged.

    ``<name>`` is a checkpoint (``student``, ``teacher``, ...), ``tokenizer``, ``data/train.parquet``,
    or empty for the artefact directory itself.
    """
    prefix = "toy://"
    if not isinstance(uri, str) or not uri.startswith(prefix):
        return uri
    name = uri[len(prefix) :].strip("/")
    root = ensure_toy_world(variant, cache_dir)
    path = root / name if name else root
    if not path.exists():
        known = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        raise FileNotFoundError(f"{uri!r}: no {name!r} in the toy world at {root} (has {known})")
    return str(path)


class _quiet_libraries:
    """Silence the datasets / transformers per-file progress bars during a build (restored after)."""

    def __enter__(self):
        import datasets
        import transformers

        self._ds = datasets.utils.logging.is_progress_bar_enabled()
        self._tf = transformers.utils.logging.is_progress_bar_enabled()
        datasets.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        import datasets
        import transformers

        if self._ds:
            datasets.utils.logging.enable_progress_bar()
        if self._tf:
            transformers.utils.logging.enable_progress_bar()


# ------------------------------------------------------------------------------- training
def _lr_at(step: int, spec: RunSpec) -> float:
    """Linear warmup to ``lr`` then cosine to ``min_lr_frac * lr`` at ``steps`` (step is 0-based)."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    t = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (spec.min_lr_frac + (1 - spec.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def last_step(spec: RunSpec) -> int:
    """The run trains up to its last save."""
    return max(spec.saves.values())


def _hint_share(spec: RunSpec, step: int) -> float:
    """Share of hinted examples at ``step``: ``hint_frac``, or the piecewise-linear ``hint_schedule``."""
    pts = spec.hint_schedule
    if not pts:
        return spec.hint_frac
    if step <= pts[0][0]:
        return pts[0][1]
    for (s0, f0), (s1, f1) in zip(pts, pts[1:]):
        if step <= s1:
            return f0 + (f1 - f0) * (step - s0) / max(1, s1 - s0)
    return pts[-1][1]


def mean_hint_share(spec: RunSpec) -> float:
    """Expected share of hinted examples over the steps the run actually trains."""
    n = last_step(spec)
    return sum(_hint_share(spec, s) for s in range(n)) / max(1, n)


def _example_schedule(spec: RunSpec, rows: list[dict]) -> list[list[tuple[int, str | None]]]:
    """Per step, the (row index, hint field or None) of each example: fixed by the run's seed."""
    rng = random.Random(f"gopd-toy-batches-{spec.seed}")
    if spec.domain_weights:
        pools = {d: [i for i, r in enumerate(rows) if r["domain"] == d] for d in sorted(spec.domain_weights)}
        domains = sorted(d for d in pools if spec.domain_weights[d] > 0)
        weights = [spec.domain_weights[d] for d in domains]
    else:
        pools, domains, weights = {"*": list(range(len(rows)))}, ["*"], [1.0]
    out = []
    for step in range(spec.steps):
        frac = _hint_share(spec, step)
        batch = []
        for _ in range(spec.batch_size):
            d = rng.choices(domains, weights)[0] if len(domains) > 1 else domains[0]
            i = rng.choice(pools[d])
            hint = rng.choice(spec.hint_fields) if rng.random() < frac else None
            batch.append((i, hint))
        out.append(batch)
    return out


def _wait_for_checkpoint(path: Path, timeout_s: float = 1800.0) -> Path:
    """Another run (maybe in another process) saves ``path``; wait for its completion marker."""
    t0 = time.monotonic()
    while not (path / DONE_MARKER).exists():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"toy build: checkpoint {path} did not appear within {timeout_s:.0f} s")
        time.sleep(0.2)
    return path


def encode_example(tokenizer, row: dict, hint_field: str | None, completion: str | None = None) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids): the prompt through ``render_prompt``, completion (default: the
    row's solution) + EOS."""
    from gopd.prompts import render_prompt

    prompt = render_prompt(tokenizer, row["problem"], None if hint_field is None else row[hint_field])
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    text = row["solution"] if completion is None else completion
    c = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p, c


def _examples(spec: RunSpec, task: Task, tokenizer, rows: list[dict], step: int, batch, cache: dict) -> list:
    """A step's (prompt ids, completion ids); a sampled task draws each trace from the run's seed,
    step and slot (the same recipe, the same traces)."""
    out = []
    for slot, key in enumerate(batch):
        if not task.sampled:
            if key not in cache:
                cache[key] = encode_example(tokenizer, rows[key[0]], key[1])
            out.append(cache[key])
            continue
        rng = random.Random(f"gopd-toy-trace-{spec.seed}-{step}-{slot}")
        text = search.completion(rows[key[0]], key[1], spec.explore, rng)
        out.append(encode_example(tokenizer, rows[key[0]], key[1], text))
    return out


def _length_buckets(examples: list[tuple[list[int], list[int]]]) -> list[list[tuple[list[int], list[int]]]]:
    """Split a batch in two by length where that saves the most padding (deterministic)."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i][0]) + len(examples[i][1]), i))
    lens = [len(examples[i][0]) + len(examples[i][1]) for i in order]
    n = len(lens)
    best_cost, best_k = n * lens[-1], n
    for k in range(1, n):
        cost = k * lens[k - 1] + (n - k) * lens[-1] + 8 * lens[-1]  # + a fixed price per extra forward pass
        if cost < best_cost:
            best_cost, best_k = cost, k
    parts = [order[:best_k], order[best_k:]] if best_k < n else [order]
    return [[examples[i] for i in part] for part in parts]


def _collate(examples: list[tuple[list[int], list[int]]], pad_id: int):
    import torch

    T = max(len(p) + len(c) for p, c in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    att = torch.zeros((len(examples), T), dtype=torch.long)
    labels = torch.full((len(examples), T), -100, dtype=torch.long)
    for b, (p, c) in enumerate(examples):
        seq = p + c
        ids[b, : len(seq)] = torch.tensor(seq)
        att[b, : len(seq)] = 1
        labels[b, len(p) : len(seq)] = torch.tensor(c)
    return ids, att, labels


def train_run(
    spec: RunSpec,
    recipe: Recipe,
    rows: list[dict],
    tokenizer,
    out_dir: Path,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Train one run from scratch and save its checkpoints into ``out_dir/<name>``; {name: step}."""
    import torch
    import torch.nn.functional as F

    from gopd.toy.models import new_model, save_checkpoint

    if spec.init_from:
        from transformers import AutoModelForCausalLM

        src = _wait_for_checkpoint(Path(out_dir) / spec.init_from)
        torch.manual_seed(spec.seed)
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    else:
        model = new_model(spec.model or recipe.model, tokenizer, seed=spec.seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
    )
    schedule = _example_schedule(spec, rows)[: last_step(spec)]
    cache: dict[tuple[int, str | None], tuple[list[int], list[int]]] = {}
    save_at = {step: name for name, step in spec.saves.items()}
    if max(save_at) > spec.steps:
        raise ValueError(f"run {spec.name}: a save step is past its {spec.steps} steps: {spec.saves}")
    saved = {}
    task = task_of(recipe)
    for step, batch in enumerate(schedule):
        examples = _examples(spec, task, tokenizer, rows, step, batch, cache)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, spec)
        opt.zero_grad(set_to_none=True)
        n_tokens = sum(len(c) for _, c in examples)
        for part in _length_buckets(examples):  # same gradient as one padded batch, less padding
            ids, att, labels = _collate(part, tokenizer.pad_token_id)
            logits = model(input_ids=ids, attention_mask=att).logits
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
            ) / n_tokens
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if on_step is not None:
            on_step(step + 1)
        if step + 1 in save_at:
            name = save_at[step + 1]
            model.eval()
            save_checkpoint(model, tokenizer, out_dir / name, tokenizer_dir=out_dir / "tokenizer")
            (out_dir / name / DONE_MARKER).write_text(json.dumps({"run": spec.name, "step": step + 1}))
            model.train()
            saved[name] = step + 1
    return saved


# ----------------------------------------------------------------------------- evaluation
def greedy_generate(model, tokenizer, prompts: Sequence[str], batch_size: int = 250, max_new_tokens: int = EVAL_MAX_NEW_TOKENS) -> list[str]:
    """Batched greedy decoding (left padding, KV cache); returns the completions' text."""
    import torch

    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        with torch.inference_mode():
            for i in range(0, len(prompts), batch_size):
                enc = tokenizer(list(prompts[i : i + batch_size]), add_special_tokens=False, padding=True, return_tensors="pt")
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                )
                out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = old_side
    return out


def evaluate(
    model, tokenizer, rows: list[dict], hint_field: str | None = None, batch_size: int = 250, max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
    answer_extract: str = "boxed",
) -> dict[str, float]:
    """Greedy held-out accuracy overall and per domain (``acc``, ``acc/<domain>``), and the mean
    completion length in characters (``chars``)."""
    from gopd.prompts import render_prompt
    from gopd.verifier import verify

    prompts = [render_prompt(tokenizer, r["problem"], None if hint_field is None else r[hint_field]) for r in rows]
    comps = greedy_generate(model, tokenizer, prompts, batch_size, max_new_tokens)
    ok = [verify(c, r["answer"], how=answer_extract) for c, r in zip(comps, rows)]
    res = {"acc": sum(ok) / max(1, len(ok))}
    if answer_extract == "countdown":  # a search world: how long, how many tries
        from gopd.tasks.countdown import count_attempts

        res["chars"] = sum(map(len, comps)) / max(1, len(comps))
        res["tries"] = sum(map(count_attempts, comps)) / max(1, len(comps))
    for d in sorted({r["domain"] for r in rows}):
        sel = [o for o, r in zip(ok, rows) if r["domain"] == d]
        res[f"acc/{d}"] = sum(sel) / max(1, len(sel))
    return res


def _eval_checkpoint(path: Path, rows: list[dict], with_hints: bool, batch_size: int, max_new_tokens: int,
                     task: Task) -> dict:
    from gopd.toy.models import load_checkpoint

    model, tok = load_checkpoint(path)
    model.eval()
    how = task.answer_extract
    res = {"greedy": evaluate(model, tok, rows, None, batch_size, max_new_tokens, how)}
    if with_hints:
        res["hinted"] = {h: evaluate(model, tok, rows, h, batch_size, max_new_tokens, how) for h in task.hint_fields}
    return res


# -------------------------------------------------------------------------------- workers
def _run_job(spec: RunSpec, recipe: Recipe, work: Path, on_step: Callable[[int], None] | None) -> dict:
    """Train one run and evaluate its checkpoints, single-threaded (so the weights do not depend on the layout)."""
    with _quiet_libraries():
        return _run_job_inner(spec, recipe, work, on_step)


def _run_job_inner(spec: RunSpec, recipe: Recipe, work: Path, on_step: Callable[[int], None] | None) -> dict:
    import torch

    from gopd.toy.data import load_split

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(work / "tokenizer"))
        train = load_split(work / "data" / "train.parquet").to_list()
        test = load_split(work / "data" / "test.parquet").to_list()
        t0 = time.perf_counter()
        saved = train_run(spec, recipe, train, tok, work, on_step)
        t_train = time.perf_counter() - t0
        results = {}
        for name, step in saved.items():
            t1 = time.perf_counter()
            ev = _eval_checkpoint(work / name, test, name == "student", recipe.eval_batch_size, recipe.eval_max_new_tokens,
                                  task_of(recipe))
            results[name] = {"steps": step, "run": spec.name, **ev, "eval_s": round(time.perf_counter() - t1, 2)}
        for r in results.values():
            r["train_s"] = round(t_train, 2)
        return results
    finally:
        torch.set_num_threads(threads)


def _worker_main(specs: list[RunSpec], recipe: Recipe, work: str, queue) -> None:
    try:
        for spec in specs:
            res = _run_job(spec, recipe, Path(work), lambda s, n=spec.name: queue.put(("step", n, s)))
            queue.put(("done", spec.name, res))
    except BaseException as e:  # report, then die
        import traceback

        queue.put(("error", ",".join(s.name for s in specs), f"{e!r}\n{traceback.format_exc()}"))
        raise


def _partition(recipe: Recipe) -> list[list[RunSpec]]:
    """Runs per worker: lane % workers, recipe order within a worker; checks checkpoint dependencies."""
    n = max(1, recipe.workers)
    groups: list[list[RunSpec]] = [[] for _ in range(n)]
    for run in recipe.runs:
        groups[run.lane % n if n > 1 else 0].append(run)
    producer = {name: run for run in recipe.runs for name in run.saves}
    for g in groups:
        done: set[str] = set()
        for run in g:
            if run.init_from:
                src = producer.get(run.init_from)
                if src is None:
                    raise ValueError(f"run {run.name}: init_from {run.init_from!r} is no checkpoint of this recipe")
                if src in g and src.name not in done:
                    raise ValueError(f"run {run.name} needs {run.init_from!r} from run {src.name}, which comes later in the same lane")
                if src not in g and src.init_from:
                    raise ValueError(f"run {run.name}: cross-lane dependency chains are not supported ({src.name} <- {src.init_from})")
            done.add(run.name)
    return [g for g in groups if g]


class _Progress:
    def __init__(self, recipe: Recipe, enabled: bool):
        self.enabled = enabled
        self.tasks = {}
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn(f"toy/{recipe.variant} " + "{task.description:<11}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=False,
                console=_console(),
            )
            for run in recipe.runs:
                self.tasks[run.name] = self.bar.add_task(run.name, total=last_step(run))

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def step(self, name: str, s: int) -> None:
        if self.bar is not None:
            self.bar.update(self.tasks[name], completed=s)

    def note(self, name: str, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.tasks[name], description=text)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _train_all(recipe: Recipe, work: Path, progress: bool) -> dict:
    results: dict = {}
    groups = _partition(recipe)
    with _Progress(recipe, progress) as bar:
        if len(groups) == 1:
            for spec in groups[0]:
                results.update(_run_job(spec, recipe, work, lambda s, n=spec.name: bar.step(n, s)))
            return results
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_worker_main, args=(g, recipe, str(work), queue), daemon=True) for g in groups]
        env_old = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            for p in procs:
                p.start()
            pending = {s.name for g in groups for s in g}
            while pending:
                try:
                    kind, name, payload = queue.get(timeout=5)
                except Exception:
                    dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                    if dead:
                        raise RuntimeError(f"toy build worker died (exit code {dead[0].exitcode}); runs left: {sorted(pending)}") from None
                    continue
                if kind == "step":
                    bar.step(name, payload)
                elif kind == "done":
                    results.update(payload)
                    pending.discard(name)
                    bar.note(name, f"{name} ✓")
                else:
                    raise RuntimeError(f"toy build run(s) {name} failed:\n{payload}")
            for p in procs:
                p.join()
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            if env_old is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = env_old
    return results


# ---------------------------------------------------------------------------------- build
def build(recipe: Recipe, out: str | os.PathLike, *, progress: bool = True) -> dict:
    """Build the whole world into ``out`` (created); returns the manifest (also ``out/manifest.json``)."""
    from gopd.toy.tokenizer import build_tokenizer, corpus_texts

    t0 = time.perf_counter()
    out = Path(out)
    task = task_of(recipe)
    (out / "data").mkdir(parents=True, exist_ok=True)
    with _quiet_libraries():
        ds = task.make_dataset(recipe.seed, recipe.n_train, recipe.n_test, recipe.task)
        for split in ("train", "test"):
            ds[split].to_parquet(str(out / "data" / f"{split}.parquet"))
        rows = ds["train"].select(range(min(recipe.tokenizer_rows, len(ds["train"])))).to_list()
        if task.sampled:  # the tokenizer must see the exploring traces, not only the short solutions
            student = next((r for r in recipe.runs if r.explore), recipe.runs[0])
            rows = search.corpus_rows(rows, student.explore, recipe.seed)
        tok = build_tokenizer(corpus_texts(rows, hint_fields=task.corpus_hints), recipe.vocab_size)
        tok.save_pretrained(str(out / "tokenizer"))
    t_prep = time.perf_counter() - t0

    results = _train_all(recipe, out, progress)

    manifest = {
        "variant": recipe.variant,
        "recipe_hash": recipe_hash(recipe),
        "build_wall_s": round(time.perf_counter() - t0, 2),
        "prep_s": round(t_prep, 2),
        "workers": recipe.workers,
        "tokenizer": "tokenizer",
        "vocab_size": len(tok),
        "data": {"train": "data/train.parquet", "test": "data/test.parquet", "n_train": len(ds["train"]), "n_test": len(ds["test"])},
        "domains": list(recipe.task.domains),
        "hint_fields": list(task.hint_fields),
        "eval": f"greedy, max_new_tokens={recipe.eval_max_new_tokens}, on data/test.parquet, verified by gopd.verifier.verify"
                + ("" if task.answer_extract == "boxed" else f" (how={task.answer_extract})"),
        "checkpoints": {},
        "recipe": recipe.as_dict(),
        "versions": _versions(),
    }
    runs = {run.name: run for run in recipe.runs}
    for name in checkpoint_names(recipe):
        r = results[name]
        run = runs[r["run"]]
        entry = {
            "path": name,
            "steps": r["steps"],
            "run": r["run"],
            "recipe": recipe.notes.get(name, "sft"),
            "init_from": run.init_from,
            "hinted_example_share": round(sum(_hint_share(run, s) for s in range(r["steps"])) / max(1, r["steps"]), 3),
            "accuracy": r["greedy"]["acc"],
            "accuracy_per_domain": {k.split("/", 1)[1]: v for k, v in r["greedy"].items() if "/" in k},
            **({"model": asdict(run.model)} if run.model else {}),
            **{f"greedy_{k}": round(r["greedy"][k], 2) for k in ("chars", "tries") if k in r["greedy"]},
            "train_s": r["train_s"],
            "eval_s": r["eval_s"],
        }
        if "hinted" in r:
            entry["hinted_accuracy"] = {h: v["acc"] for h, v in r["hinted"].items()}
            entry["hinted_accuracy_per_domain"] = {h: {k.split("/", 1)[1]: x for k, x in v.items() if "/" in k} for h, v in r["hinted"].items()}
        manifest["checkpoints"][name] = entry
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False))
    return manifest


def _versions() -> dict:
    import tokenizers
    import torch
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def load_manifest(root: str | os.PathLike) -> dict:
    return json.loads((Path(root) / "manifest.json").read_text())


def world_label(path: str | os.PathLike | None) -> str | None:
    """``<variant>@<recipe hash>`` of the toy world a checkpoint or data path lies in; None outside one."""
    if not path:
        return None
    p = Path(path)
    for root in (p, *p.parents[:2]):  # the world itself, <world>/student, <world>/data/test.parquet
        if (root / "manifest.json").is_file():
            try:
                m = load_manifest(root)
                return f"{m['variant']}@{m['recipe_hash']}"
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None


def manifest_table(manifest: dict) -> str:
    domains, hints = manifest["domains"], manifest.get("hint_fields", list(HINT_FIELDS))
    head = (f"{'checkpoint':<13}{'steps':>6}{'acc':>7}" + "".join(f"{d:>7}" for d in domains)
            + f"  hinted ({'/'.join(h.removeprefix('hint_') for h in hints)})")
    lines = [head, "-" * len(head)]
    for name, c in manifest["checkpoints"].items():
        line = f"{name:<13}{c['steps']:>6}{c['accuracy']:>7.3f}" + "".join(f"{c['accuracy_per_domain'].get(d, float('nan')):>7.3f}" for d in domains)
        if "hinted_accuracy" in c:
            line += "  " + " / ".join(f"{c['hinted_accuracy'][h]:.3f}" for h in hints)
        if "greedy_chars" in c:
            line += f"  chars {c['greedy_chars']:.0f}, tries {c['greedy_tries']:.1f}"
        lines.append(line)
    lines.append(f"variant={manifest['variant']} hash={manifest['recipe_hash']} build_wall_s={manifest['build_wall_s']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- shipping
def _world_files(root: Path) -> list[Path]:
    """Every file of a world but the checksum list and dot-files (build markers), sorted."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.name != CHECKSUMS and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def write_checksums(root: str | os.PathLike) -> Path:
    root = Path(root)
    lines = [f"{file_sha256(p)}  {p.relative_to(root).as_posix()}" for p in _world_files(root)]
    out = root / CHECKSUMS
    out.write_text("\n".join(lines) + "\n")
    return out


def checksum_errors(root: str | os.PathLike) -> list[str]:
    """What differs from ``root/SHA256SUMS``: changed, missing and unlisted files (empty: all match)."""
    root = Path(root)
    listed = {}
    for line in (root / CHECKSUMS).read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {p.relative_to(root).as_posix(): p for p in _world_files(root)}
    errors = [f"missing: {n}" for n in sorted(set(listed) - set(present))]
    errors += [f"not listed: {n}" for n in sorted(set(present) - set(listed))]
    errors += [f"changed: {n}" for n in sorted(set(listed) & set(present)) if file_sha256(present[n]) != listed[n]]
    return errors


def ship(src: str | os.PathLike) -> Path:
    """Copy a built world (its files, no build markers) into the package, with its SHA256SUMS."""
    src = Path(src)
    variant = load_manifest(src)["variant"]
    dest = SHIPPED_ROOT / variant
    tmp = SHIPPED_ROOT / f".tmp-{variant}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for p in _world_files(src):
        target = tmp / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)
    write_checksums(tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def measure_manifest(root: str | os.PathLike, *, threads: int = 1) -> list[dict]:
    """Re-evaluate every checkpoint of a world as its build did; one row per (checkpoint, hint).

    Rows: ``checkpoint``, ``hint`` (None: no hint), ``manifest`` and ``measured`` accuracy, and
    ``problems_off`` = |difference| x n_test, the held-out problems by which the two disagree.
    """
    import torch

    root = Path(root)
    manifest = load_manifest(root)
    recipe = manifest["recipe"]
    n_test = manifest["data"]["n_test"]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from gopd.toy.data import load_split

        test = load_split(root / manifest["data"]["test"]).to_list()
        rows = []
        with _quiet_libraries():
            for name, entry in manifest["checkpoints"].items():
                measured = _eval_checkpoint(root / entry["path"], test, "hinted_accuracy" in entry,
                                            recipe["eval_batch_size"], recipe["eval_max_new_tokens"],
                                            task_of(get_recipe(manifest["variant"])))
                pairs = [(None, entry["accuracy"], measured["greedy"]["acc"])]
                pairs += [(h, acc, measured["hinted"][h]["acc"]) for h, acc in entry.get("hinted_accuracy", {}).items()]
                for hint, want, got in pairs:
                    rows.append({"checkpoint": name, "hint": hint, "manifest": want, "measured": got,
                                 "problems_off": round(abs(want - got) * n_test)})
    finally:
        torch.set_num_threads(old)
    return rows


def _verify(root: Path) -> int:
    errors = checksum_errors(root)
    for e in errors:
        print(f"sha256: {e}")
    print(f"sha256: {'ok' if not errors else f'{len(errors)} file(s) differ'} ({root / CHECKSUMS})")
    worst = 0
    for r in measure_manifest(root):
        worst = max(worst, r["problems_off"])
        label = r["checkpoint"] + (f" + {r['hint']}" if r["hint"] else "")
        print(f"{label:<28} manifest {r['manifest']:.3f}  here {r['measured']:.3f}  ({r['problems_off']} problems off)")
    ok = not errors and worst <= EVAL_TOLERANCE_PROBLEMS
    print(f"{'ok' if ok else 'MISMATCH'}: at most {worst} problem(s) off per evaluation (tolerance {EVAL_TOLERANCE_PROBLEMS})")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gopd.toy.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="full", choices=sorted(RECIPES))
    ap.add_argument("--cache-dir", default=None, help="cache root (default $GOPD_CACHE/toy or ~/.cache/gopd/toy)")
    ap.add_argument("--force", action="store_true", help="rebuild into the cache even if a built (or shipped) world exists")
    ap.add_argument("--out", default=None, help="build into this directory instead of the cache (no lock, no rename)")
    ap.add_argument("--ship", action="store_true", help="copy the build (--out DIR, --from DIR, else the cache's) into the package (gopd/toy/worlds/<variant>/) with its SHA256SUMS")
    ap.add_argument("--from", dest="source", default=None, help="with --ship: a world built earlier into this directory")
    ap.add_argument("--verify", action="store_true", help="check the shipped world's sha256 and re-measure its manifest's accuracies on this machine")
    args = ap.parse_args(argv)
    if args.verify:
        root = shipped_dir(args.variant)
        if root is None:
            ap.error(f"--verify: variant {args.variant!r} is not shipped (shipped: {sorted(p.name for p in SHIPPED_ROOT.glob('*/manifest.json'))})")
        return _verify(root)
    if args.source and not args.ship:
        ap.error("--from goes with --ship")
    if args.out:
        build(get_recipe(args.variant), args.out)
        root = Path(args.out)
    elif args.source:
        root = Path(args.source)
    elif args.ship:
        root = build_in_cache(args.variant, args.cache_dir, force=args.force)
    else:
        root = ensure_toy_world(args.variant, args.cache_dir, force=args.force)
    if args.ship:
        root = ship(root)
    manifest = load_manifest(root)
    print(root)
    print(manifest_table(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
