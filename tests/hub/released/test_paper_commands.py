"""The README's "Released models" commands (Tables 1-6, Figure 1), end to end on random checkpoints
in the released layouts, in a small version: the same commands and flags with smaller sizes.

The fast test runs likelihood, generative perplexity, latency and the report; the slow one adds
MAUVE and the lm-eval harness (``pytest -m slow``).
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest


def _run(argv: list[str], out: Path | None = None) -> dict:
    from dlmkit.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    assert rc == 0, argv
    if out is not None:
        out.write_text(buf.getvalue(), encoding="utf-8")  # as `dlm ... --json > out` would
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def _commands(sedd: Path, mdlm: Path, gpt2: Path, judge: Path, data: Path, res: Path, *, full: bool) -> list[tuple[list[str], Path]]:
    models = [str(sedd), str(mdlm), str(gpt2)]
    cmds = [
        # Table 1: zero-shot perplexity (exact for GPT-2, <= bounds for SEDD / MDLM)
        (["eval", "ppl", *models, "--data", str(data / "lm/ptb/ptb.test.txt"), "--n-samples", "1", "--max-sequences", "1", "--json"], res / "ppl.json"),
        # Figure 1: latency per sequence vs steps, GPT-2 with its KV cache as the horizontal line
        (["bench", "latency", str(sedd), "--ar", str(gpt2), "--steps", "1,2", "--lengths", "16", "--batch", "1", "--repeats", "1",
          "--warmup", "0", "--plot", str(res / "figure1.png"), "--no-progress", "--json"], res / "latency.json"),
    ]
    # Tables 3-6: generative perplexity and diversity vs steps (AR: plain and nucleus rows)
    for name, m in (("sedd", sedd), ("mdlm", mdlm), ("gpt2", gpt2)):
        cmds.append((["eval", "gen", str(m), "--judge", str(judge), "--n", "2", "--steps", "2", "--length", "16", "--no-progress", "--json"], res / f"gen_{name}.json"))
    if full:
        # Table 2: MAUVE of WebText-prompted continuations
        cmds.append((["eval", "mauve", str(sedd), "--prompts", str(data / "prompts/webtext.test.prefixes.jsonl"), "--n", "6", "--prompt-tokens", "4",
                      "--continuation-tokens", "4", "--seeds", "0", "--steps", "2", "--judge", str(judge), "--num-buckets", "2", "--no-progress", "--json"],
                     res / "mauve_sedd.json"))
        # Table 1 (accuracy): lm-eval harness, offline local tasks
        cmds.append((["eval", "harness", str(sedd), "--tasks", "dlm_cloze", "--limit", "2", "--n-samples", "1", "--no-progress", "--json"], res / "harness_sedd.json"))
    return cmds


def _pipeline(tmp_path, sedd_release, mdlm_release, gpt2_hf, shared_data, full):
    res = tmp_path / "results"
    res.mkdir()
    outs = {}
    for argv, out in _commands(sedd_release, mdlm_release, gpt2_hf, gpt2_hf, shared_data, res, full=full):
        outs[out.name] = _run(argv, out)
    kinds = {r["kind"] for r in outs["ppl.json"]["ppl"]}
    assert kinds == {"sedd_absorb", "mdlm", "ar"}
    assert Path(outs["latency.json"]["plot"]).is_file()
    assert len(outs["gen_gpt2.json"]["gen"]) == 2  # plain + nucleus
    report = _run(["eval", "report", *[str(p) for p in sorted(res.glob("*.json"))], "--out", str(res / "report.md"), "--json"])
    assert (res / "report.md").is_file() and report["report"]
    return outs


def test_paper_commands_small(tmp_path, sedd_release, mdlm_release, gpt2_hf, shared_data):
    _pipeline(tmp_path, sedd_release, mdlm_release, gpt2_hf, shared_data, full=False)


@pytest.mark.slow
def test_paper_commands_with_mauve_and_harness(tmp_path, sedd_release, mdlm_release, gpt2_hf, shared_data):
    outs = _pipeline(tmp_path, sedd_release, mdlm_release, gpt2_hf, shared_data, full=True)
    assert "mauve" in outs["mauve_sedd.json"] and "harness" in outs["harness_sedd.json"]
