"""Analysis: from finished runs to the paper's tables, intervals and figure, without torch.

- `east_ray.analysis.results`: the results API (`er.load`, `er.table`, `er.compare`, ...).
- `east_ray.analysis.tables`: result frame → the paper's tables and figure (DataFrame →
  DataFrame functions).
- `east_ray.analysis.stats`: bootstrap intervals and paired tests over the test clips.
- `east_ray.analysis.metrics`: mAP, F1 and ROC-AUC as the paper computes them.
- `east_ray.analysis.reference`: the paper's published cells.

The package imports none of them, so training and the data layer load the metrics and the
statistics without pandas.
"""
