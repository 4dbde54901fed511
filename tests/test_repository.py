"""The repository stands alone: nothing outside it is read, every bundled file is read by some
code path and listed with its provenance, and every ``docs/<file>.md §N`` citation resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from warmserve import config
from warmserve.config import REPO_ROOT, data_dir, load_yaml
from warmserve.sim import calibrate as sim_calibrate
from warmserve.workload import synthetic
from warmserve.workload.api import build_workload

# What a user's clone holds and a reader follows (generated outputs and the venv are not ours).
SCANNED = ("artifact", "configs", "notebooks", "scripts", "tests", "docs", "data", ".ci")
SCANNED_FILES = ("README.md", "run_all.sh", "pyproject.toml", "environment.yml")
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".ipynb", ".sh", ".toml", ".txt", ""}
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints"}


def _text_files() -> list[Path]:
    out = [REPO_ROOT / f for f in SCANNED_FILES if (REPO_ROOT / f).is_file()]
    for top in SCANNED:
        for p in sorted((REPO_ROOT / top).rglob("*")):
            if (p.is_file() and p.suffix in TEXT_SUFFIXES and not SKIP_PARTS & set(p.parts)
                    and not any(part.endswith(".egg-info") for part in p.parts)):
                out.append(p)
    return out


def test_nothing_refers_outside_the_checkout():
    outside = ".." + "/shared"  # spelled in two pieces so this file does not match itself
    hits = [str(p.relative_to(REPO_ROOT)) for p in _text_files() if outside in p.read_text(errors="replace")]
    assert hits == [], f"files that refer to {outside}: {hits}"


HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
CITED_FILE = re.compile(r"docs/([\w-]+)\.md")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")


def _doc_sections() -> dict[str, set[str]]:
    return {p.stem: set(HEADING.findall(p.read_text())) for p in (REPO_ROOT / "docs").glob("*.md")}


def _citations(path: Path) -> list[tuple[str, str, int]]:
    """(doc, section, line) for every § on a line: a § belongs to the nearest ``docs/<file>.md``
    before it on the line (inside docs/, a bare § means the file itself)."""
    out = []
    own = path.stem if path.parent == REPO_ROOT / "docs" else None
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        files = [(m.start(), m.group(1)) for m in CITED_FILE.finditer(line)]
        for m in SECTION.finditer(line):
            before = [f for pos, f in files if pos < m.start()]
            doc = before[-1] if before else own
            out.append((doc or "?", m.group(1), n))
    return out


def test_every_section_citation_resolves():
    sections = _doc_sections()
    assert {"reference", "design", "environment", "published_measurements"} <= set(sections)
    bad, count = [], 0
    for p in _text_files():
        for doc, sec, line in _citations(p):
            count += 1
            if sec not in sections.get(doc, set()):
                bad.append(f"{p.relative_to(REPO_ROOT)}:{line}: docs/{doc}.md §{sec}")
    assert count > 50, "the code cites docs/ sections; finding none means the scan is broken"
    assert bad == [], "citations without a matching heading:\n" + "\n".join(bad)


def _bundled_files() -> set[Path]:
    return {p.resolve() for p in data_dir().rglob("*") if p.is_file() and p.suffix != ".md"}


def test_every_bundled_file_is_read_by_a_code_path(monkeypatch, tmp_path):
    """Run each code path that reads data/ once (small), and check together they read every
    bundled file: the repository keeps only inputs that something reads."""
    monkeypatch.setenv("WARMSERVE_CACHE", str(tmp_path / "cache"))
    config.BUNDLED_READS.clear()
    for trace in ("conv", "code"):  # the synthetic week: envelope, token CDF, 2023 gaps
        cfg = OmegaConf.merge(load_yaml("source", "synthetic"), {"trace": trace})
        synthetic.synthesize(cfg, n_minutes=30)
    for src in ({"name": "azure2023", "trace": "conv"}, {"name": "azure2023", "trace": "code"},
                {"name": "mooncake"}, {"name": "servegen", "clients": [25, 97], "scale": 0.05, "cache": False}):
        build_workload({"source": src, "models": "small2", "rps": 0.2})
    build_workload(load_yaml("workload", "coldstart"))  # the cold-start probe's hand-made workload
    for gpu, net in (("a100", "a100_dgx"), ("h100", "h100_dgx")):  # the twin's latency fit
        sim_calibrate.fit(gpu, net, hbm_GBps=2000.0, attn_eff=0.7, overhead_ms=3.0)
    read = {p.resolve() for p in config.BUNDLED_READS}
    unread = sorted(str(p.relative_to(data_dir())) for p in _bundled_files() - read)
    assert unread == [], f"bundled files no code path reads (remove them or read them): {unread}"


def test_sources_md_lists_every_bundled_file():
    text = (data_dir() / "SOURCES.md").read_text()
    missing = sorted(str(p.relative_to(data_dir())) for p in _bundled_files()
                     if str(p.relative_to(data_dir())) not in text)
    assert missing == [], f"data/SOURCES.md does not list: {missing}"


def test_missing_bundled_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("WARMSERVE_DATA", str(tmp_path))
    with pytest.raises(config.InputError, match="bundled data file not found: .*mlp.csv.gz"):
        sim_calibrate.fit("a100", "a100_dgx", hbm_GBps=2000.0, attn_eff=0.7, overhead_ms=3.0)
