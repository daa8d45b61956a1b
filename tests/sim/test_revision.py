"""The model fingerprint that keeps sweeps from reusing results of older code."""

from sim import revision


def test_model_revision_is_stable_and_follows_the_sources(tmp_path, monkeypatch):
    a = revision.model_revision()
    assert a == revision.model_revision() and len(a) == 12
    pkg = tmp_path / "sim"
    pkg.mkdir()
    (pkg / "m.py").write_text("x = 1\n")
    monkeypatch.setattr(revision, "_ROOT", pkg)
    revision.model_revision.cache_clear()
    try:
        one = revision.model_revision()
        (pkg / "m.py").write_text("x = 2\n")
        revision.model_revision.cache_clear()
        assert revision.model_revision() != one
    finally:
        monkeypatch.undo()
        revision.model_revision.cache_clear()
    assert revision.model_revision() == a


def test_file_digest(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("a: 1\n")
    d = revision.file_digest(f)
    f.write_text("a: 2\n")
    assert revision.file_digest(f) != d
    assert revision.file_digest(tmp_path / "missing.yaml") is None
