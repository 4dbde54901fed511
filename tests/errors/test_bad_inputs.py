"""Table of bad inputs to the three CLIs and the file sources: each is one line, exit 2, nothing written.

Every row is (cli, arguments, what the message must name). Placeholders in the
arguments: ``{out}`` a fresh output path, ``{file}`` an existing plain file,
``{foreign}`` a directory holding someone else's file, ``{f:NAME}`` a bad input
file from ``FILES`` written into the test's directory. The test snapshots the
test directory before the call and checks it is unchanged after it (so no run
directory, staging directory or failure record was left).
"""

from __future__ import annotations

import pytest
from err_harness import assert_one_line_error, invoke, tree

AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
T0 = "2024-05-13 00:00:00+00:00"
# Bad input files: name -> contents.
FILES = {
    "tok_huge.csv": "arrival_s,input_tokens,output_tokens\n0,10,10\n1,1e20,10\n",
    "tok_inf.csv": "arrival_s,input_tokens,output_tokens\n0,10,10\n1,inf,10\n",
    "tok_frac.csv": "arrival_s,input_tokens,output_tokens\n0,12.7,10\n",
    "tok_neg.csv": "arrival_s,input_tokens,output_tokens\n0,10,-4\n",
    "tok_text.csv": "arrival_s,input_tokens,output_tokens\n0,10,ten\n",
    "tok_over_limit.csv": "arrival_s,input_tokens,output_tokens\n0,10,20000000\n",
    "arr_inf.csv": "arrival_s,input_tokens,output_tokens\n0,10,10\ninf,10,10\n",
    "arr_neg.csv": "arrival_s,model,input_tokens,output_tokens\n-5,llama2-7b-0,10,10\n",
    "arr_empty.csv": "arrival_s,input_tokens,output_tokens\n0,10,10\n,10,10\n",
    "ts_ms_nan.jsonl": '{"timestamp": 0, "input_length": 5, "output_length": 5}\n'
                       '{"timestamp": "soon", "input_length": 5, "output_length": 5}\n',
    "no_tokens.csv": "arrival_s,input_tokens\n0,10\n",
    "no_rows.csv": "arrival_s,input_tokens,output_tokens\n",
    "az_huge.csv": AZ + f"{T0},1e20,5\n",
    "az_frac.csv": AZ + f"{T0},5,12.7\n",
    "az_inf.csv": AZ + f"{T0},inf,5\n",
    "az_badts.csv": AZ + f"{T0},5,5\nyesterday,5,5\n",
    "az_missing_col.csv": "TIMESTAMP,ContextTokens\n" + f"{T0},5\n",
    "az_over_limit.csv": AZ + f"{T0},5,3000000000\n",
}

W, R, E = "workload", "run", "experiments"
RUN = ["cluster=tiny_1x4"]  # the tiny workload's two models fit 4 GPUs
CASES: list[tuple[str, list[str], str]] = [
    # ---- python -m warmserve.workload: scalars, choices, keys, output path
    (W, ["rps=-1"], "rps"),
    (W, ["rps=0"], "rps"),
    (W, ["rps=abc"], "rps"),
    (W, ["rps=inf"], "rps"),
    (W, ["rps=nan"], "rps"),
    (W, ["rps=true"], "rps"),
    (W, ["alpha=-1"], "alpha"),
    (W, ["seed=-3"], "seed"),
    (W, ["seed=1.5"], "seed"),
    (W, ["window_s=0"], "window_s"),
    (W, ["window_s=7"], "window_s"),
    (W, ["cv=-1"], "cv"),
    (W, ["replay_s=0"], "replay_s"),
    (W, ["replay_s=4000"], "replay_s"),
    (W, ["output_cap=0"], "output_cap"),
    (W, ["prior_scaling=bogus"], "prior_scaling"),
    (W, ["export_jsonl=maybe"], "export_jsonl"),
    (W, ["source=bogus"], "source"),
    (W, ["models=bogus"], "models"),
    (W, ["source.scale=0"], "source.scale"),
    (W, ["source.scale=-inf"], "source.scale"),
    (W, ["source.trace=bogus"], "source.trace"),
    (W, ["source.minute_jitter=2"], "source.minute_jitter"),
    (W, ["+source.bogus=1"], "source.bogus"),
    (W, ["source=azure2024"], "source.path"),
    (W, ["source=azure2024", "source.path=/nonexistent/week.csv"], "source.path"),
    (W, ["source=azure2024", "source.path={file}", "source.day_origin=noon"], "source.day_origin"),
    (W, ["source=azure2024", "source.path={file}", "source.max_unparseable=-1"], "source.max_unparseable"),
    (W, ["bogus=1"], "bogus"),
    (W, ["+bogus=1"], "bogus"),
    (W, ["token_limit=0"], "token_limit"),
    (W, ["x=[1"], "overrides"),
    (W, ["out={file}"], "out"),
    (W, ["out={file}/sub"], "out"),
    (W, ["out={foreign}"], "out"),
    # ---- python -m warmserve.run: choices, scalars, cross-field rules, policies, output path
    (R, ["system=nope"], "system"),
    (R, ["hardware=nope"], "hardware"),
    (R, ["cluster=nope"], "cluster"),
    (R, ["workload=nope"], "workload"),
    (R, ["backend=nope"], "backend"),
    (R, ["system=warmserve", "forecaster@system.policy.forecaster=nope"], "forecaster"),
    (R, ["system=static,nope", "-m"], "system"),
    (R, ["system=reactive", "system.policy.tick_interval_s=0"], "system.policy.tick_interval_s"),
    (R, ["system=warmserve", "system.policy.tick_interval_s=0"], "system.policy.tick_interval_s"),
    (R, ["system.policy.tick_interval_s=-1"], "system.policy.tick_interval_s"),
    (R, ["slo.ttft_s=-1"], "slo.ttft_s"),
    (R, ["slo.tpot_s=0"], "slo.tpot_s"),
    (R, ["slo.ttft_s=abc"], "slo.ttft_s"),
    (R, ["trace=maybe"], "trace"),
    (R, ["progress=sometimes"], "progress"),
    (R, ["seed=abc"], "seed"),
    (R, ["seed=-1"], "seed"),
    (R, ["drain_s=-1"], "drain_s"),
    (R, ["window_s=0"], "window_s"),
    (R, ["utilization_interval_s=0"], "utilization_interval_s"),
    (R, ["replay_s=5000"], "replay_s"),
    (R, ["replay_s=inf"], "replay_s"),
    (R, ["workload.rps=-1"], "workload.rps"),
    (R, ["workload.rps=nan"], "workload.rps"),
    (R, ["workload.models=nope"], "workload.models"),
    (R, ["workload.source.scale=0"], "workload.source.scale"),
    (R, ["cluster.gpus_per_node=1"], "cluster.gpus_per_node"),
    (R, ["cluster.nodes=0"], "cluster.nodes"),
    (R, ["hardware.gpu_mem_bytes=1000000000"], "fit"),
    (R, ["hardware.nvme_GBps=-1"], "nvme_GBps"),
    (R, ["hardware.foo=1"], "hardware.foo"),
    (R, ["+system.policy.bogus=1"], "system.policy.bogus"),
    (R, ["system=warmserve", "system.policy.prewarm=maybe"], "system.policy.prewarm"),
    (R, ["system=warmserve", "system.policy.capacity=0"], "system.policy.capacity"),
    (R, ["system=warmserve", "system.policy.scale_out=1.5"], "system.policy.scale_out"),
    (R, ["system=serverlessllm", "system.policy.keep_alive_s=-1"], "system.policy.keep_alive_s"),
    (R, ["system=warmserve", "forecaster@system.policy.forecaster=noisy_paper",
         "system.policy.forecaster.rel_error=nan"], "system.policy.forecaster.rel_error"),
    (R, ["system.features.worker_pool=maybe"], "system.features.worker_pool"),
    (R, ["+system.features.bogus=true"], "system.features.bogus"),
    (R, ["backend.progress_every_s=0"], "backend.progress_every_s"),
    (R, ["+foo=1"], "foo"),
    (R, ["out={file}"], "out"),
    (R, ["out={file}/sub"], "out"),
    (R, ["out={foreign}"], "out"),
    # ---- python -m warmserve.experiments
    (E, ["run", "nope"], "nope"),
    (E, ["run", "main", "--", "system=nope"], "system"),
    (E, ["run", "main", "--", "hardware.foo=1"], "hardware.foo"),
    (E, ["run", "main", "--jobs", "0"], "--jobs"),
    # ---- file sources: numbers checked as numbers, naming file, column and first bad row
    (W, ["source=file", "source.path={f:tok_huge.csv}"], "tok_huge.csv: column 'input_tokens' row 2"),
    (W, ["source=file", "source.path={f:tok_inf.csv}"], "tok_inf.csv: column 'input_tokens' row 2: not finite"),
    (W, ["source=file", "source.path={f:tok_frac.csv}"], "column 'input_tokens' row 1: not a whole number"),
    (W, ["source=file", "source.path={f:tok_neg.csv}"], "column 'output_tokens' row 1: negative"),
    (W, ["source=file", "source.path={f:tok_text.csv}"], "column 'output_tokens' row 1"),
    (W, ["source=file", "source.path={f:tok_over_limit.csv}"], "token_limit"),
    (W, ["source=file", "source.path={f:arr_inf.csv}"], "arr_inf.csv: column 'arrival_s' row 2: not finite"),
    (W, ["source=file", "source.path={f:arr_neg.csv}", "models=small2"], "column 'arrival_s' row 1: negative"),
    (W, ["source=file", "source.path={f:arr_empty.csv}"], "column 'arrival_s' row 2"),
    (W, ["source=mooncake", "source.path={f:ts_ms_nan.jsonl}"], "column 'timestamp' row 2"),
    (W, ["source=file", "source.path={f:no_tokens.csv}"], "no_tokens.csv: missing column"),
    (W, ["source=file", "source.path={f:no_rows.csv}"], "no_rows.csv"),
    (W, ["source=azure2024", "source.path={f:az_huge.csv}"], "column 'ContextTokens' row 1"),
    (W, ["source=azure2024", "source.path={f:az_frac.csv}"], "column 'GeneratedTokens' row 1: not a whole number"),
    (W, ["source=azure2024", "source.path={f:az_inf.csv}"], "column 'ContextTokens' row 1: not finite"),
    (W, ["source=azure2024", "source.path={f:az_badts.csv}"], "column 'TIMESTAMP' row 2"),
    (W, ["source=azure2024", "source.path={f:az_missing_col.csv}"], "az_missing_col.csv: missing column"),
    (W, ["source=azure2024", "source.path={f:az_over_limit.csv}"], "column 'GeneratedTokens' row 1"),
]


def _fill(arg: str, tmp_path) -> str:
    inputs = tmp_path / "inputs"
    arg = arg.replace("{out}", str(tmp_path / "out"))
    arg = arg.replace("{file}", str(inputs / "plain.txt")).replace("{foreign}", str(inputs / "foreign"))
    if "{f:" in arg:
        head, name = arg.split("{f:")
        arg = head + str(inputs / name.rstrip("}"))
    return arg


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "plain.txt").write_text("not a directory\n")
    (d / "foreign").mkdir()
    (d / "foreign" / "thesis.tex").write_text("mine\n")
    for name, text in FILES.items():
        (d / name).write_text(text)
    return d


def _case_id(case: tuple[str, list[str], str]) -> str:
    return f"{case[0]}:{' '.join(case[1])}"[:80]


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(case, tmp_path, inputs, capsys, monkeypatch) -> None:
    cli, args, names = case
    monkeypatch.chdir(tmp_path)
    argv = [_fill(a, tmp_path) for a in args]
    if cli in (W, R) and not any(a.startswith("out=") for a in argv) and "bogus=1" not in argv:
        argv.append(f"out={tmp_path / 'out'}")
    if cli == R:
        argv = RUN + argv
    if cli == E:
        argv = [a for a in argv] + ([] if "--" in argv else ["--"]) + [f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    before = tree(tmp_path)
    code, err = invoke(cli, argv, capsys)
    assert_one_line_error(code, err, names)
    assert tree(tmp_path) == before, sorted(tree(tmp_path) - before)


def test_the_table_is_big_enough() -> None:
    """The contract is exercised on at least 60 bad inputs across the three CLIs and the file sources."""
    assert len(CASES) >= 60
    assert {c[0] for c in CASES} == {W, R, E}
