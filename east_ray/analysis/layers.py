"""Which layer of a teacher teaches best: a study's table with one row per layer of a
teacher (`catalog.teachers`: a reference `<teacher>@<layer>` is a teacher of its own), as
DataFrame → DataFrame functions beside `tables`."""

from __future__ import annotations

import pandas as pd

from east_ray.analysis.tables import format_cell
from east_ray.catalog import find_teacher


def layer_of(teacher: object) -> str | None:
    """The layer a result row's teacher stands for (None: no teacher, or a teacher with one
    output)."""
    row = find_teacher(teacher) if isinstance(teacher, str) else None
    return None if row is None else row.layer


def by_layer(table: pd.DataFrame) -> pd.DataFrame:
    """A `paper_table` whose teachers include layers of one teacher (`musicnn`,
    `musicnn@mean_pool`, ...; `catalog.teachers`) as rows = (teacher, layer) in the
    teacher's layer order and columns = (system, metric), cells as `format_table`'s: which
    layer teaches, or probes, best is read down a column. Only teachers with two or more
    layers in the table have rows; empty when none has."""
    rows = {name: find_teacher(name) for name in dict.fromkeys(table["teacher"])}
    known = {name: row for name, row in rows.items() if row is not None and row.layers}
    bases = [row.base for row in known.values()]
    layered = {name: row for name, row in known.items() if bases.count(row.base) > 1}
    if not layered:
        return pd.DataFrame()
    part = table[table["teacher"].isin(list(layered))]
    text = part.assign(
        value=part.apply(format_cell, axis=1),
        teacher=part["teacher"].map(lambda t: layered[t].base),
        layer=part["teacher"].map(lambda t: layered[t].layer),
    )
    wide = text.pivot(index=["teacher", "layer"], columns=["system", "metric"], values="value")
    order = [(row.base, layer) for row in layered.values() for layer, _ in row.layers]
    index = [key for key in dict.fromkeys(order) if key in wide.index]
    columns = list(dict.fromkeys(zip(text["system"], text["metric"], strict=True)))
    return wide.loc[index, columns]
