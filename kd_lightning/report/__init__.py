"""Study report: turn a sweep folder of ``results.json`` files into tables, figures and verdicts.

``python -m kd_lightning.report outputs/study [--out DIR] [--metric test_best.acc|test_last.acc]``
writes ``report.md`` (GitHub-readable), ``figures/*.png`` and ``tables/*.csv``. One module per concern:

- ``runs``         results.json (or a report folder's tables/runs.csv) into a DataFrame; one record per run; roles
- ``paper``        the paper's numbers, methods, tables and protocol; which values a run differs in
- ``provenance``   which teacher each student used, mismatches and stale teachers
- ``stats``        paired t-intervals, Holm, permutation/bootstrap trend tests, power, MDE, seeds needed
- ``tables``       the report's tables as DataFrames (summaries, comparisons, gap closed, fidelity, efficiency)
- ``claims``       THE STUDY'S CONCLUSIONS: each claim, its criterion and its verdict
- ``teacher_gate`` is each condition's teacher worth distilling; ``primary``, ``plan``, ``calibration``: the
  claim named in advance, the seeds a claim needs, the error rates of the rules
- ``curves``       per-epoch curves from csv/metrics.csv
- ``figures``      matplotlib figures
- ``markdown``     formatting and the report.md document
- ``problems``     runs without a result and results that need a caveat, each with its reason
- ``writer``       writing the report folder; ``cli`` the command line

Everything the notebook and the tests use is re-exported here.
"""

from kd_lightning.report.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    VERDICTS,
    Claim,
    claims_for_values,
    claims_frame,
    control_family,
    evaluate_claims,
    factor_claims,
    report_claims,
)
from kd_lightning.report.cli import main
from kd_lightning.report.curves import curve_summary, load_curves, read_metrics_csv
from kd_lightning.report.figures import (
    plot_accuracy,
    plot_accuracy_vs_cost,
    plot_gain_over_scratch,
    plot_gain_vs_complexity,
    plot_per_class_f1,
    plot_students_vs_teacher,
    plot_training_curves,
    save_figure,
)
from kd_lightning.report.formatting import dataset_label
from kd_lightning.report.markdown import (
    format_comparison,
    format_evidence,
    format_fidelity,
    format_gap_closed,
    format_provenance,
    format_student_buys,
    markdown_table,
    table_caption,
)
from kd_lightning.report.paper import paper_differences
from kd_lightning.report.problems import find_issues
from kd_lightning.report.provenance import teacher_check
from kd_lightning.report.runs import (
    DEFAULT_METRIC,
    KEYS,
    METRICS,
    RUN_COLUMNS,
    SPLITS,
    completed_runs,
    find_results,
    for_recipe,
    load_sweep,
    metric_values,
    ordered_datasets,
    ordered_methods,
    recipes_in,
    run_counts,
)
from kd_lightning.report.stats import mean_ci, t_critical
from kd_lightning.report.tables import (
    TABLES,
    Comparison,
    comparison_table,
    efficiency_table,
    evidence_table,
    fidelity_table,
    gap_closed_table,
    paired_comparison,
    student_buys_table,
    summary_table,
)
from kd_lightning.report.writer import write_report

__all__ = [name for name in dir() if not name.startswith("_")]
