"""Teachers by name: `load_extractor` builds a catalog row's extractor
(`east_ray.catalog.teachers`: everything known about a teacher without loading it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from east_ray.catalog.resolve import resolve
from east_ray.catalog.teachers import get_teacher
from east_ray.errors import UnknownNameError

if TYPE_CHECKING:
    import torch

    from east_ray.teachers.extractor import Extractor

    class Builder(Protocol):
        """The signature every row's `builder` has."""

        def __call__(
            self, device: torch.device | str, checkpoint: Path | None, pretrained: bool
        ) -> Extractor: ...

    class LayeredBuilder(Protocol):
        """The signature of a builder of a teacher with layers (`TeacherInfo.layers`)."""

        def __call__(
            self,
            device: torch.device | str,
            checkpoint: Path | None,
            pretrained: bool,
            *,
            outputs: tuple[str, ...],
        ) -> Extractor: ...


def load_extractor(
    name: str,
    device: torch.device | str = "cpu",
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    outputs: tuple[str, ...] = (),
) -> Extractor:
    """Build teacher `name`'s extractor on `device` (weights from `checkpoint` if given);
    with `outputs`, references of its layers it returns from one forward pass."""
    info = get_teacher(name)
    outputs = outputs or (info.name,)
    if info.layers:
        layered = cast("LayeredBuilder", resolve(info.builder))
        return layered(device, checkpoint, pretrained, outputs=outputs)
    if outputs != (info.name,):
        raise UnknownNameError(f"teacher {info.base} has no layers to serve {list(outputs)}")
    build = cast("Builder", resolve(info.builder))
    return build(device, checkpoint, pretrained)
