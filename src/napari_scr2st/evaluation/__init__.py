"""Evaluation of expression predictions: metrics and group-aware splits (numpy only)."""

from .metrics import (
    METRIC_KEYS,
    evaluate_adata,
    format_metrics_table,
    pearson_per_gene,
    regression_metrics,
    top_genes,
)
from .splits import (
    assert_disjoint_groups,
    group_labels,
    leave_one_patient_out,
    random_budget_mask,
    train_test_by_group,
)

__all__ = [
    "METRIC_KEYS",
    "evaluate_adata",
    "format_metrics_table",
    "pearson_per_gene",
    "regression_metrics",
    "top_genes",
    "assert_disjoint_groups",
    "group_labels",
    "leave_one_patient_out",
    "random_budget_mask",
    "train_test_by_group",
]
