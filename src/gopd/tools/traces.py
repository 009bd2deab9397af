"""Read the per-token traces a run saved (``gopd.traces`` writes them).

    python -m gopd.tools.traces render <run dir | trace file> [-o page.html]   # coloured tokens, hover = numbers
    python -m gopd.tools.traces top    <run dir | trace file> [-k 30] [--negative]
    python -m gopd.tools.traces agree  <run dir | trace file> --teacher <RL checkpoint>

``agree`` scores the saved rollouts with an RL-checkpoint teacher and reports how the hinted
teacher's positive and negative pressure (the sign of ``delta``) agree in sign with the OPD
signal ``q_rl - s`` (the positive-pressure argument: negative pressure would be noise).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from gopd.traces import SIGNALS, TRACE_DIR


def trace_files(path: str | os.PathLike) -> list[Path]:
    """A trace file, a ``traces/`` directory, or a run directory -> its trace files by step."""
    p = Path(path)
    if p.is_file():
        return [p]
    if (p / TRACE_DIR).is_dir():
        p = p / TRACE_DIR
    files = sorted(p.glob("step-*.jsonl")) if p.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no trace files (step-*.jsonl) at {path}: was the run started with traces.every_n_steps > 0?")
    return files


def load_records(path: str | os.PathLike, steps: Sequence[int] | None = None) -> list[dict]:
    recs = []
    for f in trace_files(path):
        with open(f) as fh:
            recs += [json.loads(line) for line in fh if line.strip()]
    if steps:
        recs = [r for r in recs if r["step"] in set(steps)]
    return recs


# ------------------------------------------------------------------------------- analysis
def signal(rec: Mapping, by: str) -> list[float] | None:
    if by not in SIGNALS:
        raise ValueError(f"by must be one of {', '.join(SIGNALS)}, got {by!r}")
    return rec.get(by)


def top_tokens(records: Sequence[Mapping], k: int = 20, *, by: str = "delta", negative: bool = False,
               context: int = 6) -> list[dict]:
    """The ``k`` tokens with the largest ``by`` value (most negative with ``negative``), sorted."""
    items = []
    for rec in records:
        vals = signal(rec, by)
        if vals is None:
            continue
        for t, v in enumerate(vals):
            if v is None or (v <= 0 if not negative else v >= 0):
                continue
            items.append((v, rec, t))
    items.sort(key=lambda x: x[0], reverse=not negative)
    out = []
    for v, rec, t in items[:k]:
        pieces = rec["pieces"]
        left = "".join(pieces[max(0, t - context):t])
        right = "".join(pieces[t + 1:t + 1 + context])
        out.append({"token": pieces[t], "id": rec["ids"][t] if rec.get("ids") else None, "value": v, "step": rec["step"], "row_id": rec.get("row_id"),
                    "rollout": rec.get("rollout"), "position": t, "context": f"{left}[{pieces[t]}]{right}",
                    **{name: (rec[name][t] if rec.get(name) is not None else None) for name in SIGNALS}})
    return out


def sign_agreement(pressure: Sequence[float], opd: Sequence[float]) -> dict:
    """2x2 sign table of the hinted teacher's pressure (``delta``) against the OPD signal
    (``q_rl - s``), over aligned per-token values.

    ``counts[h][o]`` for ``h, o`` in ``+`` / ``-`` (``0``: exactly zero); ``pos_agree`` is the
    fraction of positive-pressure tokens where OPD is also positive, ``neg_agree`` the fraction
    of negative-pressure tokens where OPD is also negative; ``*_mass_agree`` weigh each token by
    ``|delta|``.
    """
    def sgn(x: float) -> str:
        return "+" if x > 0 else "-" if x < 0 else "0"

    counts = {h: {o: 0 for o in "+-0"} for h in "+-0"}
    mass = {h: {o: 0.0 for o in "+-0"} for h in "+-0"}
    for d, o in zip(pressure, opd):
        counts[sgn(d)][sgn(o)] += 1
        mass[sgn(d)][sgn(o)] += abs(d)

    def frac(num, den):
        return num / den if den else math.nan

    pos_n, neg_n = sum(counts["+"].values()), sum(counts["-"].values())
    pos_m, neg_m = sum(mass["+"].values()), sum(mass["-"].values())
    return {
        "counts": counts,
        "tokens": sum(sum(c.values()) for c in counts.values()),
        "pos_tokens": pos_n,
        "neg_tokens": neg_n,
        "pos_agree": frac(counts["+"]["+"], pos_n),
        "neg_agree": frac(counts["-"]["-"], neg_n),
        "pos_mass_agree": frac(mass["+"]["+"], pos_m),
        "neg_mass_agree": frac(mass["-"]["-"], neg_m),
    }


def tensor_agreement(delta, opd_signal, mask) -> dict:
    """``sign_agreement`` over the real tokens of ``[B, T]`` tensors."""
    keep = mask.bool()
    return sign_agreement(delta[keep].tolist(), opd_signal[keep].tolist())


def score_records(records: Sequence[Mapping], model, pad_id: int, *, batch_size: int = 16,
                  chunk_size: int = 128) -> list[list[float]]:
    """Log-probs of each record's completion tokens under ``model`` in the record's (student)
    prompt: an RL-checkpoint teacher's ``q_rl``."""
    import torch

    from gopd.scoring import completion_logprobs

    out = []
    for i in range(0, len(records), batch_size):
        chunk = records[i:i + batch_size]
        t = max(len(r["ids"]) for r in chunk) or 1
        ids = torch.full((len(chunk), t), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), t), dtype=torch.long)
        for j, r in enumerate(chunk):
            ids[j, :len(r["ids"])] = torch.tensor(r["ids"], dtype=torch.long)
            mask[j, :len(r["ids"])] = 1
        with torch.no_grad():
            logp = completion_logprobs(model, [r["prompt_ids"] for r in chunk], ids, mask, pad_id,
                                       chunk_size=chunk_size)
        out += [logp[j, :len(r["ids"])].tolist() for j, r in enumerate(chunk)]
    return out


def records_agreement(records: Sequence[Mapping], q_rl: Sequence[Sequence[float]]) -> dict:
    """Sign agreement of each record's ``delta`` with ``q_rl - s``, over all saved tokens."""
    pressure, opd = [], []
    for rec, qs in zip(records, q_rl):
        if rec.get("delta") is None:
            continue
        pressure += rec["delta"]
        opd += [qr - s for qr, s in zip(qs, rec["s"])]
    if not pressure:
        raise ValueError("the traces hold no delta (a pure GRPO run has no teacher pressure to compare)")
    return sign_agreement(pressure, opd)


# ------------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #111; }
.rec { border: 1px solid #ddd; border-radius: 6px; padding: 0.8em 1em; margin: 1em 0; }
.meta { color: #555; font-size: 0.9em; margin-bottom: 0.4em; }
pre.prompt { background: #f6f6f6; padding: 0.5em; white-space: pre-wrap; font-size: 0.85em; margin: 0.3em 0; }
.toks { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.7; font-size: 0.95em; }
.t { border-radius: 2px; cursor: default; }
.t:hover { outline: 1px solid #333; }
.t:empty::before { content: "\00b7"; color: #999; }  /* a byte of a character split over tokens */
.legend span { padding: 0 0.4em; }
"""


def _colour(v: float | None, scale: float) -> str:
    if v is None or v == 0 or not math.isfinite(v):
        return "transparent"
    a = min(abs(v) / scale, 1.0) * 0.85 + 0.05
    return f"rgba(22,163,74,{a:.3f})" if v > 0 else f"rgba(220,38,38,{a:.3f})"


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


def colour_scale(records: Sequence[Mapping], by: str = "delta", q: float = 0.95) -> float:
    """The ``q`` quantile of ``|value|`` over every token (full intensity at and above it)."""
    vals = sorted(abs(v) for rec in records for v in (rec.get(by) or []) if v is not None and math.isfinite(v))
    vals = [v for v in vals if v > 0]
    if not vals:
        return 1.0
    return max(vals[min(len(vals) - 1, int(q * len(vals)))], 1e-6)


def token_title(rec: Mapping, t: int) -> str:
    """The hover text of token ``t``: every signal's value."""
    return " ".join(f"{name}={_fmt(rec[name][t] if rec.get(name) is not None else None)}" for name in SIGNALS)


LEGENDS = {  # what green / red mean for each colouring signal
    "A": ("the advantage applied (after the pressure mode and the GRPO mix)", "pushed up", "pushed down"),
    "delta": ("the teacher's raw signal delta, before the pressure mode (a zeroed sign was not applied)",
              "teacher wants it more", "teacher wants it less"),
    "opd": ("the OPD signal", "positive", "negative"),
}


def visible(piece: str) -> str:
    """A token's text with control characters (other than newline and tab) as escapes, e.g. ``\\x0b``."""
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 32 and c not in "\n\t" or ord(c) == 127 else c for c in piece)


def render_html(records: Sequence[Mapping], *, by: str = "A", scale: float | None = None,
                title: str = "gopd traces") -> str:
    """A self-contained HTML page: one card per rollout, tokens coloured by ``by`` (default ``A``,
    the advantage the loss applied; green positive, red negative, intensity by magnitude up to
    ``scale``), every signal on hover."""
    if by not in SIGNALS:
        raise ValueError(f"by must be one of {', '.join(SIGNALS)}, got {by!r}")
    scale = scale or colour_scale(records, by)
    e = html.escape
    what, up, down = LEGENDS.get(by, (by, "positive", "negative"))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
             f"<p class='legend'>Colour: <b>{e(by)}</b>, {e(what)}; "
             f"<span style='background:{_colour(1, 1)}'>{e(up)}</span> "
             f"<span style='background:{_colour(-1, 1)}'>{e(down)}</span>, no colour: 0, full intensity at "
             f"|{e(by)}| &ge; {scale:.3f}. Hover a token for s, q, r, delta, A (and opd).</p>"]
    for rec in records:
        vals = rec.get(by)
        n = len(rec["ids"])
        d = [v for v in (vals or []) if v is not None]
        pos = sum(v for v in d if v > 0) / max(n, 1)
        neg = -sum(v for v in d if v < 0) / max(n, 1)
        reward = rec.get("reward")
        meta = (f"step {rec['step']} &middot; rollout {rec.get('rollout')} &middot; row {e(str(rec.get('row_id')))} "
                f"&middot; reward {'n/a' if reward is None else f'{reward:g}'} &middot; answer {e(str(rec.get('answer')))} "
                f"&middot; {n} tokens &middot; {e(by)}: +{pos:.3f} / -{neg:.3f} per token "
                f"&middot; alpha {rec.get('alpha')} &middot; pressure {e(str(rec.get('pressure')))}")
        parts.append(f"<div class='rec' id='step{rec['step']}-r{rec.get('rollout')}'><div class='meta'>{meta}</div>")
        parts.append(f"<details><summary>prompt</summary><pre class='prompt'>{e(rec.get('prompt') or '')}</pre></details>")
        if rec.get("hint") is not None:
            parts.append(f"<div class='meta'>hint: {e(str(rec['hint']))}</div>")
        spans = []
        for t, piece in enumerate(rec["pieces"]):
            v = vals[t] if vals is not None else None
            spans.append(f"<span class='t' data-i='{t}' style='background:{_colour(v, scale)}' "
                         f"title='{e(token_title(rec, t), quote=True)}'>{e(visible(piece))}</span>")
        parts.append("<div class='toks'>" + "".join(spans) + "</div></div>")
    parts.append("</body></html>")
    return "".join(parts)


# ------------------------------------------------------------------------------- CLI
def _console():
    from rich.console import Console

    return Console()


def _print_top(items: list[dict], by: str) -> None:
    from rich.table import Table

    table = Table(title=f"top tokens by {by}", show_lines=False)
    for col in ("#", "token", by, "context", "step", "row"):
        table.add_column(col, justify="right" if col in ("#", by, "step") else "left", overflow="fold")
    for i, it in enumerate(items, 1):
        token = repr(it["token"])[1:-1] if it["token"] else f"<id {it['id']}>"  # part of a split character
        table.add_row(str(i), token, f"{it['value']:+.3f}", repr(it["context"])[1:-1],
                      str(it["step"]), str(it["row_id"]))
    _console().print(table)


def _agreement_table(res: dict) -> str:
    """The 2x2 (+ zero) table as markdown."""
    c = res["counts"]
    lines = ["| hinted pressure \\ OPD (q_rl - s) | OPD + | OPD - | OPD 0 | agree (tokens) | agree (|delta| mass) |",
             "|---|---:|---:|---:|---:|---:|",
             f"| positive (delta > 0) | {c['+']['+']} | {c['+']['-']} | {c['+']['0']} | {res['pos_agree']:.3f} | {res['pos_mass_agree']:.3f} |",
             f"| negative (delta < 0) | {c['-']['+']} | {c['-']['-']} | {c['-']['0']} | {res['neg_agree']:.3f} | {res['neg_mass_agree']:.3f} |",
             f"| zero | {c['0']['+']} | {c['0']['-']} | {c['0']['0']} | | |"]
    return "\n".join(lines)


def run_toy_variant(trace_file: Path) -> str:
    """The toy world of the run that wrote ``trace_file`` (its ``.hydra/config.yaml``); ``full`` if unknown."""
    import yaml

    for d in trace_file.resolve().parents[:3]:
        cfg = d / ".hydra" / "config.yaml"
        if cfg.is_file():
            model = (yaml.safe_load(cfg.read_text()) or {}).get("model") or {}
            return model.get("toy_variant", "full")
    return "full"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gopd.tools.traces", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("path", help="a trace file, a traces/ directory or a run directory")
    common.add_argument("--steps", type=int, nargs="*", help="only these steps (default: all)")
    common.add_argument("--by", default=None, choices=SIGNALS,
                        help="signal that colours (render; default A, the advantage applied) or ranks (top; default "
                             "delta) the tokens")
    p = sub.add_parser("render", parents=[common], help="write an HTML page of coloured tokens")
    p.add_argument("-o", "--out", help="output HTML (default: <traces dir>/traces.html or <file>.html)")
    p.add_argument("--scale", type=float, help="|value| of full colour intensity (default: 95th percentile)")
    p.add_argument("-k", type=int, default=20, help="also print the top-k positive tokens (0 = none)")
    p = sub.add_parser("top", parents=[common], help="list the top positive-pressure tokens")
    p.add_argument("-k", type=int, default=30, help="how many tokens")
    p.add_argument("--negative", action="store_true", help="the most negative tokens instead")
    p.add_argument("--context", type=int, default=6, help="pieces of context on each side")
    p = sub.add_parser("agree", parents=[common], help="sign agreement of the hinted pressure with OPD")
    p.add_argument("--teacher", required=True,
                   help="RL-checkpoint teacher (path, hub name, or toy://teacher in the run's own toy world)")
    p.add_argument("--dtype", default="float32", help="teacher weights dtype")
    p.add_argument("-o", "--out", help="also write the result as JSON here")
    args = ap.parse_args(argv)
    try:
        records = load_records(args.path, args.steps)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not records:
        print(f"error: no trace records at {args.path} for steps {args.steps}", file=sys.stderr)
        return 2
    if args.cmd == "render":
        files = trace_files(args.path)
        out = Path(args.out) if args.out else (files[0].with_suffix(".html") if Path(args.path).is_file()
                                               else files[0].parent / "traces.html")
        out.write_text(render_html(records, by=args.by or "A", scale=args.scale, title=f"gopd traces: {args.path}"))
        print(f"wrote {out} ({len(records)} rollouts, {sum(len(r['ids']) for r in records)} tokens)")
        if args.k:
            _print_top(top_tokens(records, args.k, by=args.by or "delta"), args.by or "delta")
        return 0
    if args.cmd == "top":
        by = args.by or "delta"
        _print_top(top_tokens(records, args.k, by=by, negative=args.negative, context=args.context), by)
        return 0
    import transformers

    from gopd.pool import load_model, load_tokenizer
    from gopd.toy import resolve_path

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    path = resolve_path(args.teacher, run_toy_variant(trace_files(args.path)[0]))
    tok = load_tokenizer(path)
    model = load_model(path, args.dtype)
    res = records_agreement(records, score_records(records, model, tok.pad_token_id))
    res["teacher"] = args.teacher
    print(f"sign agreement of the hinted teacher's pressure with OPD ({args.teacher}) over "
          f"{res['tokens']} tokens of {len(records)} rollouts:\n")
    print(_agreement_table(res))
    print(f"\npositive pressure agrees with OPD on {res['pos_agree']:.1%} of its tokens "
          f"({res['pos_mass_agree']:.1%} of its mass); negative pressure on {res['neg_agree']:.1%} "
          f"({res['neg_mass_agree']:.1%}).")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
