"""Figure and table lineage: sidecars name the runs and revisions, mixed revisions are refused unless allowed,
and a committed table regenerated from the same runs is byte-identical."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from analysis_helpers import make_run, requests_frame

from warmserve.analysis import figures as F
from warmserve.analysis import lineage
from warmserve.analysis.results import load_runs

REPO = Path(__file__).resolve().parents[2]
REV_A, REV_B = "a" * 40, "b" * 40


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Outputs under tmp_path, and the kernel-wide lineage settings back to their defaults after each test."""
    monkeypatch.setenv("WARMSERVE_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("WARMSERVE_TABLES", str(tmp_path / "tables"))
    monkeypatch.setenv("WARMSERVE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(lineage, "SESSION", lineage.Session())


def _run(root: Path, name: str, revision: str | None, rps: float = 1.0) -> Path:
    """A finished run; ``revision`` None leaves run.json without one (older runs)."""
    d = make_run(root, name, system="warmserve", rps=rps, requests=requests_frame([0.1, 0.2]))
    if revision is not None:
        doc = json.loads((d / "run.json").read_text())
        (d / "run.json").write_text(json.dumps(doc | {"git_revision": revision}))
    return d


def _exp(tmp_path: Path, revisions: list[str | None]) -> pd.DataFrame:
    exp = tmp_path / "results" / "main"
    for i, rev in enumerate(revisions):
        _run(exp, f"r{i}", rev, rps=1.0 + i)
    return load_runs(exp).overall


def _table(df: pd.DataFrame, runs: pd.DataFrame) -> Path:
    return F.write_table(df, "t", runs=runs, title="A table", note="Provenance: test.")


def test_figure_sidecar_lists_runs_revisions_config_hashes_and_notebook(tmp_path):
    runs = _exp(tmp_path, [REV_A, REV_A])
    F.setup("99_test")
    fig, _ = plt.subplots()
    F.save(fig, "fig", runs=runs, inputs=[tmp_path / "absent.csv"])
    doc = json.loads((tmp_path / "figures" / "fig.json").read_text())
    assert doc["kind"] == "figure" and doc["outputs"] == ["fig.png", "fig.pdf"]
    assert doc["notebook"] == "99_test" and doc["written_at"]
    assert [r["name"] for r in doc["runs"]] == ["r0", "r1"]
    assert {r["git_revision"] for r in doc["runs"]} == {REV_A} and doc["revisions"] == {REV_A: 2}
    hashes = [r["config_sha256"] for r in doc["runs"]]
    assert len(set(hashes)) == 2 and all(len(h) == lineage.HASH_CHARS for h in hashes)  # rps differs
    assert doc["inputs"] == [{"path": str(tmp_path / "absent.csv"), "sha256": None}]
    assert not doc["mixed_revisions_allowed"]


def test_config_hash_ignores_key_order_and_sees_values():
    assert lineage.config_hash({"a": 1, "b": {"c": 2}}) == lineage.config_hash({"b": {"c": 2}, "a": 1})
    assert lineage.config_hash({"a": 1}) != lineage.config_hash({"a": 2})


def test_mixed_revisions_refused_with_one_line_naming_them(tmp_path):
    runs = _exp(tmp_path, [REV_A, REV_B, REV_B])
    with pytest.raises(lineage.MixedRevisions) as e:
        F.provenance(runs)
    msg = str(e.value)
    assert "\n" not in msg and "aaaaaaa (1 run)" in msg and "bbbbbbb (2 runs)" in msg
    assert "allow_mixed_revisions" in msg
    fig, _ = plt.subplots()
    with pytest.raises(lineage.MixedRevisions):
        F.save(fig, "fig", runs=runs)
    with pytest.raises(lineage.MixedRevisions):
        _table(pd.DataFrame({"x": [1]}), runs)
    assert not (tmp_path / "figures" / "fig.png").exists() and not (tmp_path / "tables" / "t.md").exists()


def test_mixed_revisions_allowed_are_stated_in_title_table_and_sidecar(tmp_path):
    runs = _exp(tmp_path, [REV_A, REV_B])
    F.setup("99_test", allow_mixed_revisions=True)
    prov = F.provenance(runs)
    assert prov.endswith("MIXED git revisions (allowed): aaaaaaa (1 run), bbbbbbb (1 run)")
    md = _table(pd.DataFrame({"x": [1]}), runs).read_text()
    assert "Drawn from 2 runs in results/main; MIXED git revisions (allowed): aaaaaaa (1 run)" in md
    assert json.loads((tmp_path / "tables" / "t.json").read_text())["mixed_revisions_allowed"] is True
    # the explicit argument overrides the notebook's setting
    with pytest.raises(lineage.MixedRevisions):
        F.provenance(runs, allow_mixed_revisions=False)


def test_runs_without_revision_count_as_one_unknown_revision(tmp_path):
    runs = _exp(tmp_path, [None, None])
    assert set(runs.git_revision) == {lineage.UNKNOWN_REVISION}
    assert "MIXED" not in F.provenance(runs)
    assert "at git revision unknown." in _table(pd.DataFrame({"x": [1]}), runs).read_text()
    both = pd.concat([runs, _exp(tmp_path / "other", [REV_A])], ignore_index=True)
    with pytest.raises(lineage.MixedRevisions, match=r"unknown \(2 runs\)"):
        F.provenance(both)


def test_committed_table_regenerated_from_same_runs_is_byte_identical(tmp_path):
    runs = _exp(tmp_path, [REV_A, REV_A])
    df = pd.DataFrame({"system": ["warmserve"], "P99 TTFT (s)": [0.123456]})
    first = _table(df, runs).read_bytes()
    sidecar_first = json.loads((tmp_path / "tables" / "t.json").read_text())
    sidecar_first["written_at"] = "changed"
    (tmp_path / "tables" / "t.json").write_text(json.dumps(sidecar_first))
    second = _table(df, runs).read_bytes()
    assert first == second
    text = first.decode()
    assert text.startswith("# A table\n\nDrawn from 2 runs in results/main at git revision aaaaaaa.\n\nProvenance")
    assert str(tmp_path) not in text
    assert json.loads((tmp_path / "tables" / "t.json").read_text())["written_at"] != "changed"  # time: sidecar only


def test_write_markdown_puts_the_line_after_the_title_or_first(tmp_path):
    runs = _exp(tmp_path, [REV_A])
    md = F.write_markdown("h", "# Head\n\nbody\n", runs=runs).read_text()
    assert md == "# Head\n\nDrawn from 1 run in results/main at git revision aaaaaaa.\n\nbody\n"
    assert F.write_markdown("n", "no title\n", runs=None).read_text() == "no title\n"
    assert json.loads((tmp_path / "tables" / "n.json").read_text())["runs"] == []


def test_runs_given_as_directories_outside_results_are_named_without_absolute_paths(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "sim_vs_real"
    dirs = [_run(elsewhere, "sim-x", REV_A), _run(elsewhere, "testbed-x", REV_B)]
    with pytest.raises(lineage.MixedRevisions):
        F.write_markdown("s", "# S\n", runs=dirs, directory=tmp_path / "out")
    F.setup("06_sim_vs_real", allow_mixed_revisions=True)
    text = F.write_markdown("s", "# S\n", runs=dirs, directory=tmp_path / "out").read_text()
    assert "Drawn from 2 runs in sim_vs_real; MIXED git revisions (allowed)" in text and str(tmp_path) not in text


def _code(nb: Path) -> tuple[str, str]:
    cells = json.loads(nb.read_text())["cells"]
    params = "".join(s for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])
                     for s in c["source"])
    return params, "".join(s for c in cells if c["cell_type"] == "code" for s in c["source"])


NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_declares_the_switch_and_names_itself(nb):
    params, code = _code(nb)
    m = re.search(r"^allow_mixed_revisions = (True|False)", params, re.M)
    assert m, f"{nb.name}: no allow_mixed_revisions in its parameters cell"
    # no notebook mixes by default: the committed twin-vs-real runs also come from one revision
    assert m.group(1) == "False"
    assert f'F.setup("{nb.stem}", allow_mixed_revisions=allow_mixed_revisions)' in code


MIN_HOST_CHARS = 4
MACHINE_DEPENDENT = {
    "absolute path": re.compile(r"(?<![\w.])/(?:work|home|tmp|root|Users|opt)/"),
    "fit or wall time column": re.compile(r"\bfit_s|\bwall_s|\belapsed\b", re.I),
    "time of day": re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"),
}


TABLES = sorted((REPO / "results" / "tables").glob("*.md"))


@pytest.mark.parametrize("table", TABLES, ids=lambda p: p.stem)
def test_committed_tables_hold_nothing_machine_dependent(table):
    text = table.read_text()
    # a time copied from a committed input (when the twin-vs-real calibration was measured) is the
    # same on every rerun from the committed runs, so it is allowed; any other time of day is not
    committed = " ".join(p.read_text() for p in (REPO / "results").glob("*/calibration/raw.json"))
    for what, pattern in MACHINE_DEPENDENT.items():
        found = [m.group(0) for m in pattern.finditer(text)]
        if what == "time of day":
            found = [f for f in found if f.replace(" ", "T") not in committed]
        assert not found, f"{table.name}: {what}: {found[0]!r}"
    host = socket.gethostname()
    if len(host) >= MIN_HOST_CHARS:  # a very short host name ('vm') is an ordinary word in prose
        assert not re.search(rf"\b{re.escape(host)}\b", text), f"{table.name}: host name {host!r}"


def test_the_parametrized_checks_see_the_notebooks_and_committed_tables():
    # an empty glob would turn the two checks above into one skipped test each, not a failure
    assert len(NOTEBOOKS) >= 10, NOTEBOOKS
    assert {"headline", "main", "capacity"} <= {t.stem for t in TABLES}, TABLES
