"""The paper's published test results that we know, as reference data for the tables.

Only the cells listed here: the complete tables of the paper and its poster could not be
read where this was written, so a cell that is not listed is shown as unknown, never
guessed. Each value names where it comes from. Teacher "-" is a row without a teacher
(the baseline), compared under every teacher column.
"""

from __future__ import annotations

PAPER = "Ding & Lerch, ISMIR 2023, results quoted in the text"
PWC = "Papers with Code entries of the paper (OpenMIC-2018, MagnaTagATune-clean)"

# (dataset, system, teacher, metric, value, source)
REFERENCE: tuple[tuple[str, str, str, str, float, str], ...] = (
    ("openmic", "Baseline", "-", "mAP", 0.819, PAPER),
    ("openmic", "Baseline", "-", "F1", 0.809, PAPER),
    ("openmic", "Teacher_LR", "passt", "mAP", 0.858, PAPER),
    ("openmic", "Teacher_LR", "passt", "F1", 0.837, PAPER),
    ("openmic", "EAsT_KD", "panns", "mAP", 0.857, PAPER),
    ("openmic", "EAsT_KD", "panns", "F1", 0.831, PAPER),
    ("openmic", "EAsT_Final", "vggish", "mAP", 0.842, PAPER),
    ("openmic", "EAsT_Final", "vggish", "F1", 0.828, PAPER),
    ("openmic", "EAsT_KD", "passt", "mAP", 0.852, PWC),
    ("openmic", "EAsT_Final", "passt", "mAP", 0.847, PWC),
    ("magnatagatune", "Baseline", "-", "mAP", 0.437, PAPER),
    ("magnatagatune", "Baseline", "-", "ROC-AUC", 0.905, PAPER),
    ("magnatagatune", "EAsT_All", "openl3", "mAP", 0.452, PAPER),
    ("magnatagatune", "EAsT_All", "openl3", "ROC-AUC", 0.911, PAPER),
    ("magnatagatune", "Teacher_LR", "passt", "mAP", 0.473, PAPER),
    ("magnatagatune", "Teacher_LR", "passt", "ROC-AUC", 0.917, PAPER),
    ("magnatagatune", "EAsT_Final", "passt", "mAP", 0.459, PWC),
    ("magnatagatune", "EAsT_Final", "passt", "ROC-AUC", 0.912, PWC),
    ("magnatagatune", "EAsT_KD", "passt", "mAP", 0.461, PWC),
    ("magnatagatune", "EAsT_KD", "passt", "ROC-AUC", 0.915, PWC),
)
