"""The paper's study as commands: per-transform ranking (Tables 2-3) and the ablation (Table 4).

spec: what a study is (StudySpec); run: training every arm x fold x model x loss, resumably;
report: means and gains, results.md and the plot; significance: the test behind a suggestion.
"""

from .report import (
    plot_study,
    ranking,
    results_markdown,
    study_title,
    suggested_transforms,
    summarize,
)
from .run import run_study, study_transforms
from .significance import LEVEL, RULE, compare_arms, corrected_t, detectable_gain, holm
from .spec import StudySpec, ablation_arms, parse_list, transform_arms

__all__ = [
    "LEVEL",
    "RULE",
    "StudySpec",
    "ablation_arms",
    "compare_arms",
    "corrected_t",
    "detectable_gain",
    "holm",
    "parse_list",
    "plot_study",
    "ranking",
    "results_markdown",
    "run_study",
    "study_title",
    "study_transforms",
    "suggested_transforms",
    "summarize",
    "transform_arms",
]
