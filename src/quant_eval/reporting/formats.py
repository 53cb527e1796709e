"""Number formats of every score, difference and size in the reports."""

from __future__ import annotations

from dataclasses import dataclass



@dataclass(frozen=True)
class ScoreFormat:
    """Number format of the scores of one `score_kind`."""

    scale: float  # factor from the value in the JSON files to the written number
    decimals: int
    unit: str  # unit of a score, for table headers
    difference_unit: str  # unit of a paired difference


# Number formats of every score in the charts, the report and the scorecard. Binary
# metrics (share of items scored 1) are percentages with 1 decimal, and their differences
# are percentage points (pp). Graded metrics keep their own unit with 3 decimals.
# A score with its interval is written "mean [ci_low, ci_high]", e.g. "31.0 [13.0, 50.0]".
# A difference has a sign, e.g. "-4.0 [-13.0, +5.0]", unless it rounds to zero ("0.0").
# A value that is null in the JSON is written MISSING.
SCORE_FORMATS: dict[str, ScoreFormat] = {
    "binary": ScoreFormat(scale=100.0, decimals=1, unit="%", difference_unit="pp"),
    "graded": ScoreFormat(scale=1.0, decimals=3, unit="", difference_unit=""),
}
EFFECT_SIZE_DECIMALS = 2  # Cohen's d_z
FILE_SIZE_DECIMALS = 1  # MiB
BITS_PER_WEIGHT_DECIMALS = 2
MISSING = "n/a"
FAILED = "n/a (failed)"  # a score whose evaluation failed; the reason is listed under the table
MIB = 2**20


def format_value(value: float | None, score_format: ScoreFormat, signed: bool = False) -> str:
    """Format one score or difference; `signed` adds the sign of a nonzero difference."""
    if value is None:
        return MISSING
    scaled = round(value * score_format.scale, score_format.decimals)
    if scaled == 0:
        scaled = 0.0  # no "-0.0", and no sign on a zero difference
        signed = False
    sign = "+" if signed else ""
    return f"{scaled:{sign}.{score_format.decimals}f}"


def format_interval(low: float | None, high: float | None, score_format: ScoreFormat,
                    signed: bool = False) -> str:
    """Format a confidence interval as "[low, high]"."""
    if low is None or high is None:
        return f"[{MISSING}]"
    return f"[{format_value(low, score_format, signed)}, {format_value(high, score_format, signed)}]"


def format_estimate(mean: float | None, low: float | None, high: float | None,
                    score_format: ScoreFormat, signed: bool = False) -> str:
    """Format a mean with its interval: "31.0 [13.0, 50.0]"."""
    return f"{format_value(mean, score_format, signed)} {format_interval(low, high, score_format, signed)}"


def format_effect_size(value: float | None) -> str:
    """Format Cohen's d_z with its sign."""
    if value is None:
        return MISSING
    return format_value(value, ScoreFormat(1.0, EFFECT_SIZE_DECIMALS, "", ""), signed=True)


P_VALUE_DECIMALS = 3
# Names of the primary tests of statistical_analysis.json's `primary_test`, for tables.
TEST_NAMES = {"mcnemar": "McNemar", "t_test": "paired t"}


def format_p_value(value: float | None) -> str:
    """Format a p-value with 3 decimals, or "<0.001" below that."""
    if value is None:
        return MISSING
    smallest = 10.0**-P_VALUE_DECIMALS
    if value < smallest:
        return f"<{smallest:.{P_VALUE_DECIMALS}f}"
    return f"{value:.{P_VALUE_DECIMALS}f}"


def format_mib(size_bytes: int) -> str:
    """Format a file size in MiB."""
    return f"{size_bytes / MIB:.{FILE_SIZE_DECIMALS}f}"


def format_level(confidence_level: float) -> str:
    """Format a confidence level as a percentage: 0.95 -> "95%"."""
    return f"{confidence_level * 100:g}%"


def unit_suffix(unit: str) -> str:
    """Return " pp" or "%" to append to a number, or "" for a unitless one."""
    if not unit:
        return ""
    return unit if unit == "%" else f" {unit}"


# Interval methods of the statistics stage, by their `interval_method` value: a short name
# for tables, and the formula for the methodology. QUANTILE stands for the normal or t
# quantile of the confidence level, e.g. 0.975 for 95%.
INTERVAL_METHODS = {
    "wilson": (
        "Wilson",
        "Wilson's interval for the proportion $p$ of items scored 1, "
        "$\\frac{p + z^2/2n}{1 + z^2/n} \\pm \\frac{z}{1 + z^2/n}"
        "\\sqrt{\\frac{p(1-p)}{n} + \\frac{z^2}{4n^2}}$, with $z$ the QUANTILE quantile of the "
        "standard normal distribution",
    ),
    "wilson, effective n": (
        "Wilson at effective n",
        "Wilson's interval with n replaced by Kish's effective sample size "
        "$n_{eff} = p(1-p)/se^2$, kept between n and n times the runs, so that repeated runs "
        "of an item count less than new items: $\\frac{p + z^2/2n_{eff}}{1 + z^2/n_{eff}} \\pm "
        "\\frac{z}{1 + z^2/n_{eff}}\\sqrt{\\frac{p(1-p)}{n_{eff}} + \\frac{z^2}{4n_{eff}^2}}$, "
        "with $z$ the QUANTILE quantile of the standard normal distribution",
    ),
    "t over item means": (
        "t",
        "the t interval over item means, $\\bar{x} \\pm t_{QUANTILE,\\,n-1} \\cdot se$",
    ),
    "none (one item)": ("none", "no interval, because one item has no spread"),
}


def interval_method_name(method: str) -> str:
    """Return the short name of an `interval_method` value, or the value itself when unknown."""
    return INTERVAL_METHODS.get(method, (method, ""))[0]
