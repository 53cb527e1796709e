"""Methodology, analysis report and PDF scorecard, written from the two result files.

Every number comes from quantization_comparison.json and statistical_analysis.json (see
docs/results-format.md) and is written with the formats in `formats.SCORE_FORMATS`.
"""

from .analysis import write_analysis_report
from .formats import MIB, SCORE_FORMATS, ScoreFormat, format_estimate
from .methodology import write_methodology
from .results import ResultIndex
from .scorecard import ScorecardError, write_scorecard

__all__ = [
    "MIB",
    "SCORE_FORMATS",
    "ResultIndex",
    "ScoreFormat",
    "ScorecardError",
    "format_estimate",
    "write_analysis_report",
    "write_methodology",
    "write_scorecard",
]
