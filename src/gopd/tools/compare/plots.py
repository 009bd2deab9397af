"""The plots: accuracy.png, accuracy_time.png, response_len.png, length_accuracy.png and heatmap.png
(matplotlib, no pyplot)."""

from __future__ import annotations

import math
from pathlib import Path

from gopd.tools.compare.arms import ARM_ORDER, sort_key
from gopd.tools.compare.runs import Arm, Comparison, fmt_value, short, shorten
from gopd.tools.compare.tables import ACC, arm_stats, eval_times, pm


def curves(arm: Arm, column: str, smooth: int = 1):
    """Mean and std over the arm's seeds of one metrics.csv column, by step (None without data)."""
    import pandas as pd

    series = [r.metrics[column].dropna() for r in arm.ok if r.metrics is not None and column in r.metrics]
    series = [s.rolling(smooth, min_periods=1).mean() if smooth > 1 else s for s in series if len(s)]
    if not series:
        return None
    table = pd.concat(series, axis=1)
    return table.mean(axis=1), table.std(axis=1)  # std is NaN at a step with one seed: no band there


LINESTYLES = ["-", "--", ":", "-."]
LABELS = {"eval/accuracy": "held-out accuracy", "train/response_len": "rollout length (tokens)",
          "search/tries": "tries per rollout",
          "eval/response_len": "held-out response length (tokens)"}  # axis labels a reader needs no glossary for


def style(i: int, n: int) -> dict:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return {"color": cmap(i % cmap.N), "linestyle": LINESTYLES[(i // cmap.N) % 4]}


def arm_styles(arms: list[Arm]) -> list[dict]:
    """One style per arm, told apart by more than colour: with two or more arm keys the first key's
    value picks the colour and the second's the line style (e.g. pressure by colour, teacher by
    dash), so a grey-scale print or a colour-blind reader still separates the arms."""
    keys = [sorted({a.key[j] for a in arms}, key=lambda v: sort_key((v,))) for j in range(2)] \
        if arms and len(arms[0].key) >= 2 else None
    if keys is None or len(keys[1]) > len(LINESTYLES) or len(keys[1]) < 2:
        return [style(i, len(arms)) for i in range(len(arms))]
    return [{"color": style(keys[0].index(a.key[0]), len(keys[0]))["color"],
             "linestyle": LINESTYLES[keys[1].index(a.key[1])]} for a in arms]


def reference_lines(ax, arms: list[Arm]) -> None:
    """The teacher's and the student's starting held-out accuracy (means over the runs), as
    horizontal lines: where an arm started and how far it could go."""
    def mean(key):
        vals = [v for a in arms for r in a.ok if isinstance(v := (r.summary or {}).get(key), (int, float))
                and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    for key, label, ls in (("teacher/accuracy", "teacher", "--"), ("eval/accuracy_initial", "student at start", ":")):
        v = mean(key)
        if v is not None:
            ax.axhline(v, color="0.45", linestyle=ls, linewidth=1.0, label=f"{label} ({v:.3f})")


def plot_curves(ax, arms: list[Arm], column: str, title: str, smooth: int = 1, marker: str | None = None) -> None:
    drawn = 0
    styles = arm_styles(arms)
    for i, arm in enumerate(arms):
        got = curves(arm, column, smooth)
        if got is None:
            continue
        mean, std = got
        st = styles[i]
        ax.plot(mean.index, mean.values, label=f"{arm.label} (n={len(arm.ok)})", marker=marker, markersize=3, **st)
        ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=st["color"], alpha=0.15,
                        linewidth=0)
        drawn += 1
    ax.set_title(title)
    ax.set_xlabel("training step")
    ax.set_ylabel(LABELS.get(column, column))
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, f"no {column} in any completed run", ha="center", va="center", transform=ax.transAxes)


def save(fig, path: Path, legend_ax=None) -> None:
    if legend_ax is not None and legend_ax.get_legend_handles_labels()[0]:
        legend_ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def accuracy_plot(arms: list[Arm], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend

    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    plot_curves(ax, arms, "eval/accuracy", "held-out accuracy (mean ± std over seeds)", marker="o")
    reference_lines(ax, arms)
    save(fig, path, ax)


def interpolate_seeds(seeds: list[list[tuple[float, float]]], n: int = 200):
    """Mean and sample std over seeds of accuracy vs training seconds. Each seed's evaluations fall at
    its own times, so each is interpolated linearly between its evaluations onto ``n`` common times
    from 0 to the end of the shortest seed (never extrapolated). Returns (times, mean, std); std is
    NaN with one seed."""
    import numpy as np

    grid = np.linspace(0.0, min(points[-1][0] for points in seeds), n)
    ys = np.array([np.interp(grid, *zip(*points)) for points in seeds])
    std = ys.std(axis=0, ddof=1) if len(seeds) > 1 else np.full(n, np.nan)
    return grid, ys.mean(axis=0), std


def time_panels(c: Comparison) -> list[tuple[str, list[tuple[int, str, Arm]]]]:
    """accuracy_time.png's panels as (title, [(colour index, line label, arm)]): one panel per value
    of the paper's axes (ARM_ORDER) but the last that varies, e.g. one per teacher with the
    estimators as lines; a line keeps its colour in every panel. One panel (legend outside, as in
    accuracy.png) when at most one of those axes varies, there would be more than 6, or a line's
    label is too long for a legend inside its panel (other config keys vary too)."""
    axes = [k for k in c.keys if k in ARM_ORDER][:-1]
    lines = sorted({tuple(v for k, v in zip(c.keys, a.key) if k not in axes) for a in c.arms}, key=sort_key)
    panels: dict[tuple, list[tuple[int, str, Arm]]] = {}
    for arm in c.arms:
        rest = tuple(v for k, v in zip(c.keys, arm.key) if k not in axes)
        label = " ".join(f"{h}={v}" for h, v in arm.parts.items() if h not in map(short, axes)) or arm.label
        panels.setdefault(tuple(arm.key[c.keys.index(k)] for k in axes), []).append((lines.index(rest), label, arm))
    if not 2 <= len(panels) <= 6 or any(len(label) > 40 for lines in panels.values() for _, label, _ in lines):
        return [("", [(i, arm.label, arm) for i, arm in enumerate(c.arms)])]
    return [(" ".join(f"{short(k)}={shorten(fmt_value(v))}" for k, v in zip(axes, values)), panels[values])
            for values in sorted(panels, key=sort_key)]


def accuracy_time_plot(c: Comparison, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = time_panels(c)
    n_styles = max((i for _, lines in panels for i, _, _ in lines), default=0) + 1
    fig = Figure(figsize=(9 if len(panels) == 1 else 5.2 * len(panels), 5.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    drawn = 0
    for ax, (title, lines) in zip(axes, panels):
        for i, label, arm in lines:
            seeds = [p for p in map(eval_times, arm.ok) if p is not None]
            if not seeds:
                continue
            st = style(i, n_styles)
            for points in seeds:  # every seed as measured, to its own end
                ax.plot(*zip(*points), color=st["color"], linewidth=0.6, alpha=0.3, marker="o", markersize=1.5)
            grid, mean, std = interpolate_seeds(seeds)
            ax.plot(grid, mean, label=f"{label} (n={len(seeds)})", linewidth=1.8, **st)
            ax.fill_between(grid, mean - std, mean + std, color=st["color"], alpha=0.15, linewidth=0)
            drawn += 1
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training seconds before the evaluation")
        reference_lines(ax, [arm for _, _, arm in lines])
        ax.grid(alpha=0.3)
        if len(panels) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=7, framealpha=0.8)
    axes[0].set_ylabel(LABELS["eval/accuracy"])
    fig.suptitle("held-out accuracy vs training time (sum of perf/rollout_s + perf/score_s + perf/update_s over "
                 "the steps before it;\nevaluation, checkpointing and start-up not counted). Thin: each seed at its "
                 "evaluations. Thick ± band: mean ± std\nover seeds, each seed interpolated linearly between its "
                 "evaluations, up to the end of the arm's shortest seed", fontsize=9)
    if not drawn:
        axes[0].text(0.5, 0.5, "no completed run with eval/accuracy and step timings", ha="center", va="center",
                     transform=axes[0].transAxes)
    save(fig, path, axes[0] if len(panels) == 1 else None)


def response_len_plot(arms: list[Arm], path: Path, smooth: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.5))
    train, held_out = fig.subplots(1, 2)
    rolled = f", rolling mean of {smooth} steps" if smooth > 1 else ""
    plot_curves(train, arms, "train/response_len", f"rollouts: train/response_len{rolled}", smooth)
    plot_curves(held_out, arms, "eval/response_len", "held-out greedy: eval/response_len", marker="o")
    save(fig, path, held_out)


def length_accuracy_plot(arms: list[Arm], path: Path, smooth: int) -> None:
    """Length over training next to accuracy (and, in a search world, tries per rollout): does a
    mode that shortens its responses end more or less accurate?"""
    from matplotlib.figure import Figure

    search = any(curves(arm, "search/tries") is not None for arm in arms)
    fig = Figure(figsize=(19 if search else 13, 4.5))
    axes = fig.subplots(1, 3 if search else 2)
    rolled = f", rolling mean of {smooth} steps" if smooth > 1 else ""
    plot_curves(axes[0], arms, "train/response_len", f"rollout length{rolled}", smooth)
    if search:
        plot_curves(axes[1], arms, "search/tries", f"tries per rollout{rolled}", smooth)
    plot_curves(axes[-1], arms, "eval/accuracy", "held-out accuracy", marker="o")
    reference_lines(axes[-1], arms)
    save(fig, path, axes[-1])


def heatmap_plot(c: Comparison, path: Path) -> None:
    """Mean final accuracy over alpha x grpo_mix; one panel per value of the other arm keys."""
    from matplotlib.figure import Figure

    ia, im = c.keys.index("alpha"), c.keys.index("grpo_mix")
    others = [i for i in range(len(c.keys)) if i not in (ia, im)]
    panels: dict[tuple, list[Arm]] = {}
    for arm in c.arms:
        panels.setdefault(tuple(arm.key[i] for i in others), []).append(arm)
    fig = Figure(figsize=(4.8 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (rest, arms) in zip(axes, sorted(panels.items(), key=lambda kv: sort_key(kv[0]))):
        title = " ".join(f"{short(c.keys[i])}={shorten(fmt_value(v))}" for i, v in zip(others, rest))
        heatmap_panel(ax, arms, ia, im, title)
    fig.suptitle("final held-out accuracy (mean ± std over seeds)")
    save(fig, path)


def heatmap_panel(ax, arms: list[Arm], ia: int, im: int, title: str) -> None:
    import numpy as np

    alphas = sorted({a.key[ia] for a in arms}, key=lambda v: sort_key((v,)))
    mixes = sorted({a.key[im] for a in arms}, key=lambda v: sort_key((v,)))
    grid = np.full((len(alphas), len(mixes)), np.nan)
    cells = []
    for arm in arms:
        s = arm_stats(arm)
        i, j = alphas.index(arm.key[ia]), mixes.index(arm.key[im])
        grid[i, j] = s[ACC]
        cells.append((i, j, s))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", origin="lower", aspect="auto")
    for i, j, s in cells:  # dark text on the bright (high) end of viridis, light text elsewhere
        dark = math.isfinite(s[ACC]) and image.norm(s[ACC]) > 0.6
        text = pm(s[ACC], s[ACC + "_std"]).replace(" ± ", "\n± ") + f"\nn={s['n']}"
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="black" if dark else "white")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(mixes)), [fmt_value(v) for v in mixes])
    ax.set_yticks(range(len(alphas)), [fmt_value(v) for v in alphas])
    ax.set_xlabel("grpo_mix")
    ax.set_ylabel("alpha")
    ax.set_title(title, fontsize=9)
