"""Offline hint rewriting: a new dataset with a hint column generated from each row's solution.

    python -m gopd.tools.hints --template structural --generator <checkpoint> --out data/hinted
    python -m gopd.tools.hints data=nemotron_math_v2 --template minimal --generator Qwen/Qwen3-8B \\
        --dtype bfloat16 --column hint_minimal --out data/nemotron-minimal

Positional arguments are Hydra overrides of the trainer's ``conf/train.yaml``: the data is the
trainer's (``data.path``; its splits ``data.train_split`` and ``data.test_split``, the latter
skipped when null; its ``problem_field``, ``solution_field`` and ``answer_field``), ``seed`` seeds
the sampling, and ``toy://`` paths, ``--generator``'s included, resolve in the world
``model.toy_variant`` names. Each split is read through ``gopd.data.load_split`` (``toy://data``,
a directory with ``<split>.parquet|jsonl``, a single file, or a hub dataset) and mapped as training
maps it (``gopd.data.prepare``: ``data.dedupe_field``, chat-message solutions as text,
``data.answer_from_solution``); the template of
``conf/hints/<name>.yaml`` (or a YAML file) is rendered with each row's columns, where
``{problem}``, ``{solution}`` and ``{answer}`` are the data config's fields (``data.problem_field``,
...); the generator model is asked for a hint, and ``<out>/<split>.parquet`` is written: every
input column plus the hint column. Train on it with the same overrides and
``data.path=<out> teacher.hint_field=<column>``.

Three templates ship, from strongest to weakest: ``answer`` (states the answer and the key
steps), ``structural`` (what a strong solution does, never the answer: modelled on positive-pressure
OPSD's rewritten hints) and ``minimal`` (one nudge). The toy world's rule-based ``hint_soft`` needs no generator:
it is a column of the toy data already.

Progress is saved in shards (``<out>/.hints-work/<split>/shard-NNNNNN.jsonl``, each written
atomically when its rows are done): a killed run continues where it stopped when restarted with
the same command, and a finished split is skipped (idempotent). Another configuration in the same
``--out`` is an error (``--restart`` discards the old progress). Rows without a solution are an
error naming the row, before anything is generated; ``--skip-missing`` leaves their hint null.

Engines: ``hf`` (Hugging Face ``generate``, any checkpoint, ``toy://`` included). Another
engine (vLLM) is a class with ``generate(list[str]) -> list[str]`` registered in ``ENGINES``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import string
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gopd.tools import trainconf

TEMPLATE_DIR = Path(__file__).resolve().parents[3] / "conf" / "hints"
WORK_DIR = ".hints-work"
MANIFEST = "hints_manifest.json"


class HintError(ValueError):
    """A problem with the data, the template or the output; the message is one line."""


# ------------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class HintTemplate:
    name: str
    column: str
    prompt: str
    reveals_answer: bool = False
    system: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0

    def fields(self) -> list[str]:
        """Row columns the prompt reads (``{name}`` placeholders)."""
        names = []
        for text in (self.prompt, self.system or ""):
            names += [f for _, f, _, _ in string.Formatter().parse(text) if f]
        return list(dict.fromkeys(names))

    def render(self, row: Mapping, fields: Mapping[str, str] | None = None) -> str:
        """The prompt for ``row``; ``fields`` maps a placeholder to the column it reads (``problem`` -> ``question``)."""
        values = {**row, **{name: row[col] for name, col in (fields or {}).items() if col in row}}
        return self.prompt.format_map({k: ("" if v is None else v) for k, v in values.items()})


def available_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def load_template(spec: str) -> HintTemplate:
    """A template by name (``conf/hints/<name>.yaml``) or by path to a YAML file."""
    import yaml

    path = Path(spec).expanduser()
    if not path.is_file():
        path = TEMPLATE_DIR / f"{spec}.yaml"
    if not path.is_file():
        raise HintError(f"--template: no template {spec!r} (a YAML file, or one of: {', '.join(available_templates())})")
    data = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in dataclasses.fields(HintTemplate)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise HintError(f"template {path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key in ("prompt", "column"):
        if not data.get(key):
            raise HintError(f"template {path}: '{key}' is required")
    data.setdefault("name", path.stem)
    return HintTemplate(**data)


def clean_hint(text: str) -> str:
    """The generator's answer as a hint: a reasoning block (``<think>...</think>``) and a leading
    ``Hint:`` / ``Guidance:`` label dropped, whitespace stripped."""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:  # the budget ended inside the reasoning: no hint was written
        text = text.split("<think>", 1)[0]
    text = text.strip()
    text = re.sub(r"^(hint|guidance)\s*:\s*", "", text, flags=re.IGNORECASE)
    return text.strip()


def mentions_answer(hint: str | None, answer) -> bool:
    """Does the hint contain the answer as a standalone token (``842`` in ``is 842.``, not in ``8420``)?"""
    a = "" if answer is None else str(answer).strip()
    if not hint or not a:
        return False
    return re.search(rf"(?<![\w.]){re.escape(a)}(?![\w])", hint) is not None


# ------------------------------------------------------------------------------- engines
class HFGenerator:
    """Hugging Face ``generate`` on one checkpoint (``gopd.rollout.hf_generate``), chat-templated."""

    name = "hf"

    def __init__(self, path: str, *, dtype: str = "float32", device: str = "cpu", max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, system: str | None = None,
                 trust_remote_code: bool = False):
        from gopd.pool import load_model, load_tokenizer

        self.tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        self.model = load_model(path, dtype, trust_remote_code=trust_remote_code).to(device)
        self.max_new_tokens, self.temperature, self.top_p, self.system = max_new_tokens, temperature, top_p, system

    def render(self, user: str) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + \
                       [{"role": "user", "content": user}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = (self.system + "\n\n" if self.system else "") + user
        return tok(text, add_special_tokens=False)["input_ids"]

    def seed(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)

    def generate(self, prompts: Sequence[str]) -> list[str]:
        from gopd.rollout import decode, hf_generate

        ids, mask = hf_generate(self.model, self.tokenizer, [self.render(p) for p in prompts],
                                max_new_tokens=self.max_new_tokens, greedy=self.temperature == 0,
                                temperature=self.temperature or 1.0, top_p=self.top_p)
        return decode(self.tokenizer, ids, mask)


# The seam for other engines: ENGINES[name](path, dtype=, device=, max_new_tokens=, temperature=,
# top_p=, system=) -> an object with generate(list of user turns) -> list of texts
# (and optionally seed(int)). A vLLM engine would build LLM(model=path), render the chat template
# the same way and call llm.generate(texts, SamplingParams(max_tokens=..., temperature=..., top_p=...)).
ENGINES: dict[str, Callable] = {"hf": HFGenerator}


# ------------------------------------------------------------------------------- rewriting
def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def data_digest(ds, id_field: str, solution_field: str) -> str:
    """Content hash of the ids and solutions (a changed input is not silently resumed)."""
    h = hashlib.sha256()
    cols = [c for c in (id_field, solution_field) if c in ds.column_names]
    for batch in ds.select_columns(cols).iter(batch_size=10_000):
        h.update(json.dumps(batch, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def check_split(ds, split: str, template: HintTemplate, *, column: str, solution_field: str, id_field: str,
                skip_missing: bool, fields: Mapping[str, str] | None = None) -> list[int]:
    """Every check before generation; returns the indices of rows without a solution.
    ``fields``: placeholder -> column, as ``HintTemplate.render``."""
    cols = ds.column_names
    if column in cols:
        raise HintError(f"split '{split}' already has a column '{column}': pass another --column")
    if solution_field not in cols:
        raise HintError(f"split '{split}' has no column '{solution_field}' (columns: {', '.join(cols)}); "
                        f"set data.solution_field")
    absent = [f for f in template.fields() if (fields or {}).get(f, f) not in cols]
    if absent:
        raise HintError(f"template '{template.name}' reads {', '.join('{' + f + '}' for f in absent)}, "
                        f"not a column of split '{split}' (columns: {', '.join(cols)})")
    missing = [i for i, s in enumerate(ds[solution_field]) if s is None or not str(s).strip()]
    if missing and not skip_missing:
        i = missing[0]
        rid = ds[i][id_field] if id_field in cols else i
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise HintError(f"row {rid} (index {i}) of split '{split}' has no '{solution_field}'{more}: "
                        f"fix the data or pass --skip-missing to leave its hint empty")
    return missing


def _shard_name(k: int) -> str:
    return f"shard-{k:06d}.jsonl"


def _read_shard(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def rewrite_split(ds, split: str, out: Path, template: HintTemplate, make_generator: Callable[[], object], *,
                  column: str, solution_field: str = "solution", id_field: str = "id",
                  answer_field: str = "answer", skip_missing: bool = False, shard_size: int = 128,
                  batch_size: int = 16, seed: int = 0, config: Mapping | None = None, restart: bool = False,
                  progress: bool = True, fields: Mapping[str, str] | None = None) -> dict:
    """Generate ``column`` for every row of ``ds`` and write ``<out>/<split>.parquet``.

    ``make_generator()`` is called at most once, and only if some row still needs a hint.
    ``fields``: placeholder -> column, as ``HintTemplate.render``.
    Returns the split's statistics, or None when the split was done already (nothing written).
    """
    missing = set(check_split(ds, split, template, column=column, solution_field=solution_field,
                              id_field=id_field, skip_missing=skip_missing, fields=fields))
    work = out / WORK_DIR / split
    config = {**(config or {}), "split": split, "rows": len(ds), "shard_size": shard_size,
              "data_digest": data_digest(ds, id_field, solution_field)}
    cfg_path = work / "config.json"
    if cfg_path.is_file() and not restart:
        old = json.loads(cfg_path.read_text())
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if diff:
            raise HintError(f"{out} holds split '{split}' from another configuration (differs in: {', '.join(diff)}): "
                            f"pass another --out, or --restart to discard it")
    elif cfg_path.is_file() and restart:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not cfg_path.is_file():
        _atomic_write(cfg_path, json.dumps(config, indent=2, default=str))
    final = out / f"{split}.parquet"
    n_shards = max(math.ceil(len(ds) / shard_size), 1) if len(ds) else 0
    done = {k for k in range(n_shards) if (work / _shard_name(k)).is_file()}
    pending = [k for k in range(n_shards) if k not in done]
    t0 = time.perf_counter()
    generated = 0
    if pending:
        generator = make_generator()
        done_rows = sum(min(shard_size, len(ds) - k * shard_size) for k in done)
        with _progress(progress) as bar:
            task = bar.add_task(f"{split} ({template.name})", total=len(ds), completed=done_rows)
            for k in pending:
                lo, hi = k * shard_size, min((k + 1) * shard_size, len(ds))
                rows = ds.select(range(lo, hi)).to_list()
                if hasattr(generator, "seed"):
                    generator.seed(seed * 1_000_003 + k)  # a resumed shard samples as it would have
                hints: list[str | None] = [None] * len(rows)
                todo = [j for j in range(len(rows)) if lo + j not in missing]
                bar.advance(task, len(rows) - len(todo))
                for b in range(0, len(todo), batch_size):
                    idx = todo[b:b + batch_size]
                    texts = generator.generate([template.render(rows[j], fields) for j in idx])
                    for j, text in zip(idx, texts):
                        hints[j] = clean_hint(text)
                    generated += len(idx)
                    bar.advance(task, len(idx))
                lines = [json.dumps({"index": lo + j, "id": row.get(id_field, lo + j), "hint": hints[j]},
                                    ensure_ascii=False, default=str) for j, row in enumerate(rows)]
                _atomic_write(work / _shard_name(k), "\n".join(lines) + "\n")
    elif final.is_file():
        return None  # done before, same configuration: nothing to do
    hints = []
    for k in range(n_shards):
        recs = _read_shard(work / _shard_name(k))
        if [r["index"] for r in recs] != list(range(k * shard_size, min((k + 1) * shard_size, len(ds)))):
            raise HintError(f"{work / _shard_name(k)} does not hold rows {k * shard_size}.. in order: "
                            f"delete it to regenerate those rows")
        hints += [r["hint"] for r in recs]
    import datasets

    result = ds.add_column(column, hints, feature=datasets.Value("string"))
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    result.to_parquet(str(tmp))
    os.replace(tmp, final)
    answers = ds[answer_field] if answer_field in ds.column_names else [None] * len(ds)
    return {
        "rows": len(ds),
        "generated": generated,
        "resumed": len(ds) - generated - len(missing),  # read back from shards of an earlier run
        "missing_solution": len(missing),
        "empty": sum(1 for h in hints if h is not None and not h),
        "mentions_answer": sum(mentions_answer(h, a) for h, a in zip(hints, answers)),
        "wall_s": round(time.perf_counter() - t0, 2),
        "output": str(final),
    }


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def advance(self, *a, **k):
        pass


def _progress(enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("rows"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())


def rewrite(data: str, out: str | Path, template: HintTemplate, *, generator: str, splits: Sequence[str] = ("train", "test"),
            column: str | None = None, engine: str = "hf", dtype: str = "float32", device: str = "cpu",
            limit: int | None = None, problem_field: str = "problem", solution_field: str = "solution",
            id_field: str = "id", answer_field: str = "answer", skip_missing: bool = False, shard_size: int = 128,
            batch_size: int = 16, seed: int = 0, restart: bool = False, progress: bool = True,
            names: Mapping[str, str] | None = None, prepare: Callable | None = None,
            make_generator: Callable[[], object] | None = None) -> dict:
    """Rewrite every split of ``data`` into ``out``; returns the manifest it writes, plus
    ``skipped``: the splits that were done already.

    ``data`` and ``generator`` are plain paths or hub names (``toy://`` resolved before);
    ``names`` says how they were written (``{"data": "toy://data", ...}``): what the manifest and
    the resume check record, so they do not depend on where a toy world lies on this machine.
    ``prepare(dataset)`` maps each loaded split first (the CLI: the data config's ``gopd.data.prepare``).
    ``make_generator`` overrides the engine (tests pass a fake); otherwise ``ENGINES[engine]``
    loads ``generator`` once, on the first split with work left.
    """
    out = Path(out).expanduser()
    column = column or template.column
    src = Path(data).expanduser()
    if src.exists() and (src if src.is_dir() else src.parent).resolve() == out.resolve():
        raise HintError(f"--out {out} is the input's directory: write the rewritten dataset elsewhere")
    if engine not in ENGINES and make_generator is None:
        raise HintError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    loaded: list = []

    def lazy():
        if not loaded:
            loaded.append(make_generator() if make_generator is not None else ENGINES[engine](
                generator, dtype=dtype, device=device, max_new_tokens=template.max_new_tokens,
                temperature=template.temperature, top_p=template.top_p, system=template.system))
        return loaded[0]

    names = {"data": data, "generator": generator, **(names or {})}
    fields = {"problem": problem_field, "solution": solution_field, "answer": answer_field}
    config = {"data": names["data"], "template": dataclasses.asdict(template), "column": column,
              "generator": names["generator"], "engine": engine, "seed": seed, "fields": fields,
              "skip_missing": skip_missing, "limit": limit, "dtype": dtype}
    kw = dict(column=column, solution_field=solution_field, id_field=id_field, skip_missing=skip_missing, fields=fields)
    datasets_by_split = _load_checked(data, splits, template, limit, prepare, kw)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update({"column": column, "template": template.name, "reveals_answer": template.reveals_answer,
                     "generator": names["generator"], "engine": engine, "source": names["data"]})
    manifest.setdefault("splits", {})
    skipped = []
    for split, ds in datasets_by_split.items():
        stats = rewrite_split(ds, split, out, template, lazy, answer_field=answer_field, shard_size=shard_size,
                              batch_size=batch_size, seed=seed, config=config, restart=restart, progress=progress,
                              **kw)
        if stats is None:
            skipped.append(split)
        else:
            manifest["splits"][split] = stats
            _atomic_write(manifest_path, json.dumps(manifest, indent=2))
    return {**manifest, "skipped": skipped}


def _load_checked(data: str, splits: Sequence[str], template: HintTemplate, limit: int | None,
                  prepare: Callable | None, kw: Mapping) -> dict:
    """Every split loaded and checked before anything is generated: a bad row in `test` fails in seconds."""
    from gopd.data import load_split

    out = {}
    for split in splits:
        ds = load_split(data, split)
        if prepare is not None:
            ds = prepare(ds)
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        check_split(ds, split, template, **kw)
        out[split] = ds
    return out


# ------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = trainconf.parser("python -m gopd.tools.hints", __doc__,
                          "data (data=..., data.path, splits, fields), model.toy_variant (the world of toy:// "
                          "paths), seed (e.g. model.toy_variant=mini)")
    ap.add_argument("--out", required=True, help="output directory: <out>/<split>.parquet (+ progress shards, manifest)")
    ap.add_argument("--template", default="structural",
                    help=f"hint template: a YAML file or one of {', '.join(available_templates()) or '(none found)'} (conf/hints/)")
    ap.add_argument("--column", default=None, help="output column (default: the template's 'column')")
    ap.add_argument("--generator", default="toy://teacher",
                    help="generator checkpoint: path, hub name, or toy://NAME (in model.toy_variant's world)")
    ap.add_argument("--engine", default="hf", help=f"generation engine: {', '.join(ENGINES)}")
    ap.add_argument("--dtype", default="float32", help="generator weights: float32 | bfloat16 | float16")
    ap.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda:N")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="override the template's generation budget")
    ap.add_argument("--temperature", type=float, default=None, help="override the template's temperature (0 = greedy)")
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per generate call")
    ap.add_argument("--shard-size", type=int, default=128, help="rows per progress shard (at most this many are redone after a kill)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows of each split (try a template)")
    ap.add_argument("--id-field", default="id", help="column naming a row in error messages")
    ap.add_argument("--skip-missing", action="store_true", help="rows without a solution get a null hint instead of an error")
    ap.add_argument("--restart", action="store_true", help="discard progress saved in --out by another configuration")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--show", type=int, default=3, help="print this many example hints at the end")
    return ap


def _quiet_libraries() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _rewrite(args) -> tuple[dict, list[str]]:
    """The CLI's ``rewrite``: data, fields, splits and seed from the trainer's config; returns the
    manifest and the splits rewritten."""
    from gopd.data import prepare
    from gopd.toy import resolve_path
    from gopd.tools.trainconf import load

    conf = load(args.overrides)
    d = conf.cfg.data
    template = load_template(args.template)
    over = {k: v for k, v in (("max_new_tokens", args.max_new_tokens), ("temperature", args.temperature))
            if v is not None}
    template = dataclasses.replace(template, **over)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    _quiet_libraries()
    # --generator is the tool's own flag: resolved in the same world as the config's toy:// paths
    generator = resolve_path(args.generator, conf.cfg.model.toy_variant)
    splits = splits_of(d)
    return rewrite(d.path, args.out, template, generator=generator, splits=splits, column=args.column,
                   engine=args.engine, dtype=args.dtype, device=device, limit=args.limit,
                   problem_field=d.problem_field, solution_field=d.solution_field or "solution",
                   answer_field=d.answer_field, id_field=args.id_field, skip_missing=args.skip_missing,
                   shard_size=args.shard_size, batch_size=args.batch_size, seed=conf.cfg.seed, restart=args.restart,
                   progress=not args.no_progress, prepare=lambda ds: prepare(ds, d),  # rows as training reads them
                   names={"data": conf.raw.data.path, "generator": args.generator}), splits


def splits_of(d) -> list[str]:
    """The splits training reads: ``data.train_split`` and ``data.test_split`` (none when null: held out of train)."""
    return [d.train_split, *([d.test_split] if d.get("test_split") else [])]


def main(argv: Sequence[str] | None = None) -> int:
    from gopd.schema import ConfigError

    args = build_parser().parse_args(argv)
    try:
        manifest, splits = _rewrite(args)
    except (HintError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished shards are kept in {Path(args.out) / WORK_DIR}; "
              f"run the same command again to continue", file=sys.stderr)
        return 130
    _report(args, manifest, splits)
    return 0


def _report(args, manifest: Mapping, splits: Sequence[str]) -> None:
    col = manifest["column"]
    for split in splits:
        st = manifest["splits"].get(split, {})
        if split in manifest["skipped"]:
            print(f"{split}: already done ({st.get('rows', '?')} rows in {st.get('output', args.out)}): nothing to do")
            continue
        leak = (f"{st['mentions_answer']} mention the answer" if not manifest["reveals_answer"]
                else f"{st['rows'] - st['missing_solution'] - st['mentions_answer']} do not state the answer")
        print(f"{split}: {st['rows']} rows -> {st['output']} (column {col}): {st['generated']} generated, "
              f"{st['resumed']} resumed, {st['missing_solution']} without a solution, {st['empty']} empty, {leak}")
    if args.show:
        import pyarrow.parquet as pq

        for row in pq.read_table(Path(args.out) / f"{splits[0]}.parquet").slice(0, args.show).to_pylist():
            print(f"  [{row.get(args.id_field)}] {str(row.get(col))[:200]!r}")
    keep = [o for o in args.overrides if not o.startswith("data.path=")]  # the output replaces the input
    print(f"train on it: python src/train.py {' '.join([*keep, f'data.path={args.out}', f'teacher.hint_field={col}'])}")


if __name__ == "__main__":
    sys.exit(main())
