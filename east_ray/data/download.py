"""How a dataset release is fetched (its catalog row's `release`), and the command that
downloads one.

`python -m east_ray.data download openmic` (or `magnatagatune`) leaves under `--out`:

```
<out>/openmic-2018/          the OpenMIC-2018 tree (class-map.json, openmic-2018.npz, ...)
<out>/magnatagatune/         annotations_final.csv and the folders 0/ .. f/ of mp3 clips
<out>/downloads/<name>/      the downloaded files while they are needed (deleted after a
                             successful extraction unless --keep-archives)
```

A release folder is complete when it holds the marker file of `east_ray.data.archives`
(`.east_ray_extracted`); rerunning when it is there does nothing and makes no request.
`find_release` also accepts a release extracted by hand (its folder holds the release's
`key_file` but no marker). Each
file is fetched by `east_ray.data.fetch` (resumable, retried, length-checked) and unpacked by
`east_ray.data.archives` (all or nothing, unsafe members refused).

What is checksummed, and how
----------------------------
- OpenMIC-2018: the md5 of `openmic-2018-v1.0.0.tgz`, `e4ccf187e2bb5ab2e115416e8aafe7f4`
  (published on Zenodo record 1432913), is verified before the file gets its final name.
  A mismatch raises `ChecksumError` naming the file, the expected and the actual md5, and
  deletes the download (the next run starts over).
- OpenMIC's validation list (the authors' `openmic_valid.json`, fetched by `prepare`, not
  by this command): pinned to a commit of their repository, md5 and size checked; see
  `east_ray.data.valid_split`.
- MagnaTagATune: the host (mirg.city.ac.uk) publishes no checksum, so the md5s pinned
  in the catalog row are those that public loaders verify their downloads of the same host's files
  against, kept only where two sources agree: `mp3.zip.001..003` and
  `annotations_final.csv` as in kapre's `load_magnatagatune` (keunwoochoi/kapre,
  `kapre/datasets.py`) and in a torchaudio-based `MagnaTagATune` dataset class that
  downloads with `download_url(..., hash_value=..., hash_type='md5')` (its repository was
  not identified; it lists the same four md5s); `annotations_final.csv`'s md5 also appears
  in a third, standalone download script. A mismatching part raises `ChecksumError` naming
  it and is deleted (the other parts are kept). The md5 of the joined `mp3.zip` was found in
  one script only, so it is not pinned (the parts' md5s fix its bytes anyway). Also checked:
  each file's length against the server's `Content-Length` / `Content-Range` total, the
  CRC-32 of every zip member (by `zipfile`, as each member is extracted), the number of
  `.mp3` members (25,863: one per row of `annotations_final.csv`) and the 25,863 data rows
  of `annotations_final.csv`. None of these md5s was checked against the real files here
  (the hosts are unreachable from where this was written), and whether `zipfile` reads the
  concatenated parts directly was not tried; some users report needing `zip -FF`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from east_ray.catalog import DATASETS
from east_ray.catalog.datasets import Release
from east_ray.data.archives import MARKER, count_members, safe_extract
from east_ray.data.checksums import CHUNK
from east_ray.data.fetch import DownloadError, download_file
from east_ray.errors import BadValueError, UnknownNameError

logger = logging.getLogger(__name__)


def downloadable() -> list[str]:
    """The datasets whose release is downloaded (not rendered here), sorted."""
    return sorted(name for name, row in DATASETS.items() if row.release is not None)


def _release(name: str) -> Release:
    release = DATASETS[name].release if name in DATASETS else None
    if release is None:
        raise UnknownNameError(
            f"name: unknown release {name!r}, expected one of: {', '.join(downloadable())}"
        )
    return release


def mirror_base(mirror: str) -> str:
    """`mirror` as a base URL the file names are appended to; refused unless http(s) or file."""
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme not in ("http", "https", "file"):
        raise BadValueError(
            f"mirror: got {mirror!r}, expected an http://, https:// or file:// base URL"
        )
    return mirror if mirror.endswith("/") else mirror + "/"


def _join(parts: Sequence[Path], joined: Path) -> Path:
    """Concatenate `parts` into `joined` (via `<joined>.part`, renamed when complete)."""
    if joined.is_file():
        return joined
    tmp = joined.with_name(joined.name + ".part")
    logger.info("joining %s into %s", ", ".join(p.name for p in parts), joined.name)
    with tmp.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, sink, CHUNK)
    os.replace(tmp, joined)
    return joined


def _check_rows(path: Path, rows: int) -> None:
    """Delete the text file `path` and raise unless it has `rows` data rows after its header."""
    with path.open("rb") as source:
        actual = sum(1 for line in source if line.strip()) - 1
    if actual != rows:
        path.unlink()
        raise DownloadError(
            f"{path.name}: {actual} data rows, expected {rows}; the file is damaged or not "
            "the published release, it was deleted: rerun to download it again"
        )


def _check_members(archive: Path, member_count: tuple[str, int], downloads: Path) -> None:
    suffix, expected = member_count
    if (count := count_members(archive, suffix)) != expected:
        raise DownloadError(
            f"{archive}: holds {count} '{suffix}' members, expected {expected}; the "
            f"download is damaged or not the published release: delete {downloads} and rerun"
        )


def _clean(downloads: Path, paths: Sequence[Path]) -> None:
    """Delete the downloaded `paths`, then `downloads` and its parent if left empty."""
    for path in paths:
        path.unlink(missing_ok=True)
    for folder in (downloads, downloads.parent):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def find_release(name: str, out: Path) -> Path | None:
    """The folder of release `name` under `out` when it is there, else None: extracted by
    `download_release` (it holds the marker) or by hand (it holds the release's `key_file`)."""
    release = _release(name)
    root = Path(out) / release.root
    if (root / MARKER).is_file() or (root / release.key_file).is_file():
        return root
    return None


def download_release(
    name: str, out: Path, mirror: str | None = None, *, keep_archives: bool = False
) -> Path:
    """Download, verify and extract the release `name` under `out`; return its folder.

    `name`: a dataset with a release, `downloadable()` (`openmic` → `out/openmic-2018`,
    `magnatagatune` → `out/magnatagatune`). `mirror`: a base URL that replaces the release's
    host (the file names are appended to it). Downloads go to `out/downloads/<name>/` and
    are deleted after a successful extraction unless `keep_archives` (a joined multi-part
    archive is always deleted: the parts hold the same bytes). Does nothing when the release
    folder is complete.
    """
    release = _release(name)
    out = Path(out)
    root = out / release.root
    if (root / MARKER).is_file():
        logger.info("%s: %s is already there; nothing to do", name, root)
        return root
    base = release.base_url if mirror is None else mirror_base(mirror)
    downloads = out / "downloads" / name
    paths = {
        remote.name: download_file(
            base + urllib.parse.quote(remote.name),
            downloads / remote.name,
            remote.md5,
            size=remote.size,
        )
        for remote in release.files
    }
    for file_name, rows in release.text_rows:
        _check_rows(paths[file_name], rows)
    parts = [paths[p] for p in release.archive_parts]
    joined = len(parts) > 1
    archive = _join(parts, downloads / release.archive) if joined else parts[0]
    if release.member_count is not None:
        _check_members(archive, release.member_count, downloads)
    safe_extract(
        archive, root, strip_root=release.strip_root, add=[paths[f] for f in release.add_files]
    )
    if joined:
        archive.unlink()
    if not keep_archives:
        _clean(downloads, list(paths.values()))
    logger.info("%s: ready in %s", name, root)
    return root


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `download` subcommand (`name`, `--out`, `--mirror`, `--keep-archives`)."""
    parser = subparsers.add_parser(
        "download",
        help="download, verify and unpack a dataset release",
        description="Download, verify and unpack a dataset release (resumable; rerunning "
        "a finished release does nothing). Prints the release folder.",
    )
    parser.add_argument("name", choices=downloadable(), help="which release")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/raw"),
        metavar="DIR",
        help="folder that receives the release folder (default: data/raw)",
    )
    parser.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help="base URL replacing the release's host; the file names are appended to it",
    )
    parser.add_argument(
        "--keep-archives",
        action="store_true",
        help="keep the downloaded archives after a successful extraction",
    )
    parser.set_defaults(func=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    """The `download` subcommand; its errors are `UserError`s, so the CLI exits 2 for them."""
    print(download_release(args.name, args.out, args.mirror, keep_archives=args.keep_archives))
    return 0
