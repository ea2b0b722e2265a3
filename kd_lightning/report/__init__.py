"""Study report: turn a sweep folder of ``results.json`` files into tables, figures and verdicts.

``python -m kd_lightning.report outputs/study [--out DIR] [--metric test_best.acc|test_last.acc]``
writes ``report.md`` (GitHub-readable), ``claims.json``, ``figures/*.png`` and ``tables/*.csv``.

Two layers (docs/report.md): **analysis** returns DataFrames and verdict records (``claims.Claim``: p values,
family, α, MDE, warnings as numbers) and imports no rendering module; **rendering** turns them into markdown,
CSV/JSON and figures and holds every sentence. No module names a method: roles and order come from the runs'
records and conf/method/ (:mod:`kd_lightning.methods`), the paper's methods and numbers from ``paper.yaml``.

Everything the notebook and the tests use is re-exported here.
"""

from kd_lightning.report.claims import (
    claims_for_values,
    control_family,
    evaluate_claims,
    factor_claims,
    report_claims,
)
from kd_lightning.report.claims_text import claims_frame, claims_markdown, criterion, evidence, statement
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
from kd_lightning.report.formatting import markdown_table
from kd_lightning.report.markdown import (
    format_comparison,
    format_evidence,
    format_fidelity,
    format_gap_closed,
    format_provenance,
    format_student_buys,
    table_caption,
)
from kd_lightning.report.paper import TABLES, Comparison, dataset_label, paper_differences
from kd_lightning.report.problems import find_issues
from kd_lightning.report.records import RUN_COLUMNS, load_sweep
from kd_lightning.report.runs import (
    DEFAULT_METRIC,
    KEYS,
    METRICS,
    SPLITS,
    completed_runs,
    find_results,
    for_recipe,
    metric_values,
    ordered_datasets,
    ordered_methods,
    recipes_in,
    run_counts,
    teacher_check,
)
from kd_lightning.report.stats import mean_ci, t_critical
from kd_lightning.report.tables import (
    comparison_table,
    efficiency_table,
    evidence_table,
    fidelity_table,
    gap_closed_table,
    paired_comparison,
    student_buys_table,
    student_comparisons,
    summary_table,
)
from kd_lightning.report.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED, VERDICTS, Claim, Part
from kd_lightning.report.writer import write_report

#: the two layers, by module: an analysis module never imports a rendering one (tests/report/test_layers.py)
ANALYSIS = tuple(
    "calibration claims curves paper plan primary problems records runs stats summaries tables teacher_gate "
    "verdicts".split()
)
RENDERING = ("claims_text", "cli", "figures", "formatting", "markdown", "writer", "__main__")

__all__ = [name for name in dir() if not name.startswith("_")]
