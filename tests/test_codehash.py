"""Code hashes from the import graph: transitive, lazy imports included, siblings' lazy imports not."""

from __future__ import annotations

from thincam.codehash import closure, code_hash, entry_closure


def _package(root, files):
    for name, text in files.items():
        path = root / "thincam" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


FILES = {
    "__init__.py": "",
    "low.py": "X = 1\n",
    "mid.py": "from thincam import low\n",
    "lazy.py": "Y = 2\n",
    "unused.py": "Z = 3\n",
    "stages/__init__.py": "",
    "stages/job.py": (
        "from thincam.mid import low\n\n"
        "def first():\n    from thincam import lazy\n    return _helper()\n\n"
        "def _helper():\n    from thincam.solvers import fast\n\n"
        "def second():\n    from thincam import unused\n"
    ),
    "solvers/__init__.py": "",
    "solvers/fast.py": "",
}


def test_closure_is_transitive_with_parents_and_submodules(tmp_path):
    _package(tmp_path, FILES)
    assert closure(tmp_path, "mid") == {"", "mid", "low"}
    assert entry_closure(tmp_path, "stages.job:first") == {
        "", "stages", "stages.job", "mid", "low", "lazy", "solvers", "solvers.fast"
    }
    assert "lazy" not in entry_closure(tmp_path, "stages.job:second")


def test_hash_follows_exactly_the_imported_sources(tmp_path):
    _package(tmp_path, FILES)
    before = {e: code_hash(tmp_path, e) for e in ("stages.job:first", "stages.job:second")}
    closure.cache_clear()
    (tmp_path / "thincam/low.py").write_text("X = 10\n")  # two imports below the stage
    after = {e: code_hash(tmp_path, e) for e in before}
    assert all(before[e] != after[e] for e in before)
    (tmp_path / "thincam/lazy.py").write_text("Y = 20\n")  # only first() imports it
    again = {e: code_hash(tmp_path, e) for e in before}
    assert again["stages.job:first"] != after["stages.job:first"]
    assert again["stages.job:second"] == after["stages.job:second"]
