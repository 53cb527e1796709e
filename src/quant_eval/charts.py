"""Performance and efficiency charts of the quantization variants, drawn from the result files.

Figures are drawn with matplotlib's Agg canvas (no display needed) in seaborn's style;
scores use the scale of reporting.formats.SCORE_FORMATS, so binary metrics are percentages.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .files import atomic_output
from .reporting import MIB, ResultIndex

logger = logging.getLogger(__name__)

DPI = 150
# Fonts tried in order for each character, so that Japanese names are drawn too.
FONT_FAMILIES = ["DejaVu Sans", "Noto Sans CJK JP"]
BAR_GROUP_WIDTH = 0.8  # share of the space between two benchmarks that a group of bars takes
MARKERS = ["o", "s", "D", "^", "v", "P", "X"]


def score_frame(index: ResultIndex) -> pd.DataFrame:
    """Return one row per model, variant and benchmark: scaled mean, CI and file size in MiB."""
    rows = []
    for model in index.models():
        for variant in index.variants(model):
            for benchmark in index.benchmarks():
                result = index.result(model, variant["variant"], benchmark)
                scale = index.score_format(benchmark).scale
                rows.append({
                    "model": model,
                    "variant": variant["variant"],
                    "benchmark": benchmark,
                    # A failed evaluation has no mean: NaN draws no bar and no point.
                    "mean": np.nan if result["mean"] is None else result["mean"] * scale,
                    "ci_low": np.nan if result["ci_low"] is None else result["ci_low"] * scale,
                    "ci_high": np.nan if result["ci_high"] is None else result["ci_high"] * scale,
                    "size_mib": variant["file_size_bytes"] / MIB,
                })
    return pd.DataFrame(rows)


def _error_bars(frame: pd.DataFrame) -> np.ndarray:
    """Return matplotlib's 2×n array of distances from each mean down and up to its CI bounds."""
    below = (frame["mean"] - frame["ci_low"]).fillna(0).clip(lower=0)
    above = (frame["ci_high"] - frame["mean"]).fillna(0).clip(lower=0)
    return np.vstack([below.to_numpy(), above.to_numpy()])


def _score_label(index: ResultIndex) -> str:
    units = {index.score_format(b).unit for b in index.benchmarks()}
    if units == {"%"}:
        return "score (% of items)"
    if "%" in units:
        return "score (binary metrics in % of items)"
    return "score"


def _variant_palette(frame: pd.DataFrame) -> dict[str, Any]:
    variants = list(dict.fromkeys(frame["variant"]))
    return dict(zip(variants, sns.color_palette("colorblind", len(variants))))


def _chart_style() -> contextlib.ExitStack:
    """Return the seaborn style and font settings of every chart, as one context manager."""
    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = [family for family in FONT_FAMILIES if family in installed] or ["sans-serif"]
    stack = contextlib.ExitStack()
    stack.enter_context(sns.axes_style("whitegrid"))
    stack.enter_context(sns.plotting_context("notebook"))
    stack.enter_context(matplotlib.rc_context({"font.family": families}))
    return stack


def _save(figure: Figure, output: Path) -> None:
    FigureCanvasAgg(figure)
    with atomic_output(output) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI, bbox_inches="tight")
    logger.info("Wrote %s", output)


def _draw_bars(ax: Axes, frame: pd.DataFrame, benchmarks: list[str], palette: dict[str, Any]) -> None:
    variants = list(dict.fromkeys(frame["variant"]))
    width = BAR_GROUP_WIDTH / len(variants)
    for position, variant in enumerate(variants):
        rows = frame[frame["variant"] == variant].set_index("benchmark").loc[benchmarks].reset_index()
        x = np.arange(len(benchmarks)) - BAR_GROUP_WIDTH / 2 + (position + 0.5) * width
        ax.bar(x, rows["mean"], width=width, color=palette[variant], label=variant)
        ax.errorbar(x, rows["mean"], yerr=_error_bars(rows), fmt="none", ecolor="black",
                    elinewidth=1, capsize=3)


def draw_performance(comparison: dict[str, Any], analysis: dict[str, Any], output: Path) -> None:
    """Draw the score of each variant per benchmark, with CI error bars, one panel per model."""
    index = ResultIndex.build(comparison, analysis)
    frame = score_frame(index)
    models = index.models()
    benchmarks = list(index.benchmarks())
    palette = _variant_palette(frame)
    n_variants = len(palette)

    with _chart_style():
        panel_width = 1.5 + len(benchmarks) * (0.45 * n_variants + 0.6)
        figure = Figure(figsize=(panel_width * len(models) + 2, 4.8), layout="constrained")
        axes = figure.subplots(1, len(models), sharey=True, squeeze=False)[0]
        for ax, model in zip(axes, models):
            _draw_bars(ax, frame[frame["model"] == model], benchmarks, palette)
            ax.set_xticks(np.arange(len(benchmarks)))
            ax.set_xticklabels([f"{b}\n({index.benchmarks()[b]['metric']})" for b in benchmarks])
            ax.set_title(model)
            ax.set_ylim(bottom=0)
        axes[0].set_ylabel(_score_label(index))
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, title="variant", loc="outside right upper")
        _save(figure, output)


def draw_efficiency(comparison: dict[str, Any], analysis: dict[str, Any], output: Path) -> None:
    """Draw file size (MiB) against score per variant, with CI error bars, one panel per benchmark."""
    index = ResultIndex.build(comparison, analysis)
    frame = score_frame(index)
    models = index.models()
    benchmarks = list(index.benchmarks())
    palette = _variant_palette(frame)

    with _chart_style():
        figure = Figure(figsize=(5.2 * len(benchmarks), 4.6), layout="constrained")
        axes = figure.subplots(1, len(benchmarks), squeeze=False)[0]
        for ax, benchmark in zip(axes, benchmarks):
            for model_position, model in enumerate(models):
                rows = frame[(frame["benchmark"] == benchmark) & (frame["model"] == model)]
                marker = MARKERS[model_position % len(MARKERS)]
                for _, row in rows.iterrows():
                    if np.isnan(row["mean"]):
                        continue
                    ax.errorbar(row["size_mib"], row["mean"], yerr=_error_bars(rows.loc[[row.name]]),
                                fmt=marker, color=palette[row["variant"]], elinewidth=1, capsize=3,
                                markersize=7)
                    ax.annotate(row["variant"], (row["size_mib"], row["mean"]), xytext=(6, 4),
                                textcoords="offset points", fontsize=8)
            info = index.benchmarks()[benchmark]
            ax.set_title(f"{benchmark} ({info['metric']}, n = {info['n_items']})")
            ax.set_xlabel("file size (MiB)")
            ax.set_ylabel(_score_label(index))
            ax.set_xlim(left=0, right=frame["size_mib"].max() * 1.25)
        if len(models) > 1:
            handles = [Line2D([], [], color="gray", linestyle="none", marker=MARKERS[i % len(MARKERS)])
                       for i in range(len(models))]
            figure.legend(handles, models, title="model", loc="outside right upper")
        _save(figure, output)


def paired_frame(index: ResultIndex) -> pd.DataFrame:
    """Return one row per model, compared variant and benchmark: scaled paired difference, CI and flips."""
    rows = []
    for model, variant, benchmark, paired in index.comparisons():
        if paired is None:
            continue
        scale = index.score_format(benchmark).scale
        flips = paired.get("flips")
        rows.append({
            "model": model,
            "variant": variant,
            "benchmark": benchmark,
            "mean": paired["mean_difference"] * scale,
            "ci_low": np.nan if paired["ci_low"] is None else paired["ci_low"] * scale,
            "ci_high": np.nan if paired["ci_high"] is None else paired["ci_high"] * scale,
            "correct_to_wrong": np.nan if flips is None else flips["correct_to_wrong"],
            "wrong_to_correct": np.nan if flips is None else flips["wrong_to_correct"],
        })
    return pd.DataFrame(rows, columns=["model", "variant", "benchmark", "mean", "ci_low", "ci_high",
                                       "correct_to_wrong", "wrong_to_correct"])


def _empty_panel(figure: Figure, message: str) -> None:
    ax = figure.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center")


def draw_paired_differences(comparison: dict[str, Any], analysis: dict[str, Any], output: Path) -> None:
    """Draw each variant's paired difference from the reference with its CI, zero line marked.

    One panel per benchmark (binary differences in percentage points); one row per model
    and variant.
    """
    index = ResultIndex.build(comparison, analysis)
    frame = paired_frame(index)
    benchmarks = [b for b in index.benchmarks() if b in set(frame["benchmark"])]
    level = f"{index.confidence_level * 100:g}%"

    with _chart_style():
        n_rows = max(1, len(frame[["model", "variant"]].drop_duplicates()))
        figure = Figure(figsize=(4.6 * max(1, len(benchmarks)) + 1.5, 2.2 + 0.45 * n_rows), layout="constrained")
        if frame.empty:
            _empty_panel(figure, f"no variant shares items with the reference {index.reference}")
            _save(figure, output)
            return
        palette = _variant_palette(frame)
        axes = figure.subplots(1, len(benchmarks), sharey=True, squeeze=False)[0]
        labels = list(dict.fromkeys(zip(frame["model"], frame["variant"])))
        positions = {label: len(labels) - 1 - k for k, label in enumerate(labels)}
        for ax, benchmark in zip(axes, benchmarks):
            rows = frame[frame["benchmark"] == benchmark]
            for _, row in rows.iterrows():
                y = positions[(row["model"], row["variant"])]
                ax.errorbar(row["mean"], y, xerr=_error_bars(rows.loc[[row.name]]), fmt="o",
                            color=palette[row["variant"]], elinewidth=1.5, capsize=3)
            ax.axvline(0, color="black", linewidth=1, linestyle="--")
            unit = index.score_format(benchmark).difference_unit
            ax.set_xlabel(f"variant − {index.reference}" + (f" ({unit})" if unit else ""))
            ax.set_title(f"{benchmark} ({index.benchmarks()[benchmark]['metric']})")
        axes[0].set_yticks([positions[label] for label in labels])
        multiple_models = len(index.models()) > 1
        axes[0].set_yticklabels([f"{m} / {v}" if multiple_models else v for m, v in labels])
        figure.suptitle(f"Paired difference from {index.reference} over shared items, {level} CI")
        _save(figure, output)


def draw_flips(comparison: dict[str, Any], analysis: dict[str, Any], output: Path) -> None:
    """Draw, per variant and binary benchmark, the items that flipped: to wrong down, to correct up."""
    index = ResultIndex.build(comparison, analysis)
    frame = paired_frame(index).dropna(subset=["correct_to_wrong"])
    benchmarks = [b for b in index.benchmarks() if b in set(frame["benchmark"])]

    with _chart_style():
        figure = Figure(figsize=(4.6 * max(1, len(benchmarks)) + 1.5, 4.6), layout="constrained")
        if frame.empty:
            _empty_panel(figure, "no binary benchmark was compared with the reference, so there are no flips")
            _save(figure, output)
            return
        axes = figure.subplots(1, len(benchmarks), squeeze=False)[0]
        multiple_models = len(index.models()) > 1
        for ax, benchmark in zip(axes, benchmarks):
            rows = frame[frame["benchmark"] == benchmark].reset_index(drop=True)
            x = np.arange(len(rows))
            ax.bar(x, -rows["correct_to_wrong"], color="#d55e00", label="correct → wrong")
            ax.bar(x, rows["wrong_to_correct"], color="#0072b2", label="wrong → correct")
            for position, row in rows.iterrows():
                ax.annotate(f"{int(row['correct_to_wrong'])}", (position, -row["correct_to_wrong"]),
                            xytext=(0, -10), textcoords="offset points", ha="center", fontsize=8)
                ax.annotate(f"{int(row['wrong_to_correct'])}", (position, row["wrong_to_correct"]),
                            xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
            ax.axhline(0, color="black", linewidth=1)
            ax.set_xticks(x)
            ax.set_xticklabels([f"{m} / {v}" if multiple_models else v for m, v in zip(rows["model"], rows["variant"])],
                               rotation=35, ha="right", rotation_mode="anchor")
            # Counts below the axis are drawn negative; the tick labels give their size.
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{abs(value):g}"))
            n_items = index.benchmarks()[benchmark]["n_items"]
            ax.set_title(f"{benchmark} (n = {n_items} items)")
            ax.set_ylabel(f"items that flipped against {index.reference}")
            limit = max(1.0, float(rows[["correct_to_wrong", "wrong_to_correct"]].to_numpy().max()))
            ax.set_ylim(-limit * 1.25, limit * 1.25)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside right upper")
        _save(figure, output)
