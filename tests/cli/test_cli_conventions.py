"""Conventions every long `dlm` command follows: --no-progress, --json."""

import pytest

from dlmkit.cli import build_parser

# commands with a progress bar (`dlm sample` has none)
LONG = [["train"], ["eval", "ppl", "RUN", "--data", "X"], ["eval", "gen", "RUN", "--judge", "J"],
        ["eval", "mauve", "RUN", "--prompts", "P"], ["eval", "harness", "RUN", "--tasks", "T"], ["bench", "latency", "RUN"],
        ["distill", "dlm-one", "RUN", "--out", "O"], ["distill", "tcs"], ["quickstart"]]


@pytest.mark.parametrize("argv", LONG, ids=lambda a: " ".join(a[:2]))
def test_long_commands_take_no_progress_and_json(argv):
    args = build_parser().parse_args([*argv, "--no-progress", "--json"])
    assert args.no_progress and args.json
