"""Evaluation tasks that run models (perplexity, generative perplexity, MAUVE, lm-eval, latency, seq2seq).

Each task is registered here with its command-line options (plain argparse: nothing heavy is
imported to parse a command line) and the names of its run and rendering functions, which live
in the task's own module; see :mod:`dlmkit.eval.tasks.registry`. Registration order is the
order of ``dlm eval --help``.
"""

from __future__ import annotations

import argparse

from dlmkit.checks import NON_NEGATIVE, POSITIVE, POSITIVE_REAL, count_or_fraction, device, int_list, int_or_word, number
from dlmkit.registry import lazy
from dlmkit.eval.tasks.registry import TASKS, Task, register, reported

__all__ = ["TASKS", "Task", "register", "reported"]


def _ppl_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", help="checkpoint or run folders")
    p.add_argument("--data", nargs="+", required=True, help="text files, folders, globs or jsonl")
    p.add_argument("--batch-size", type=number(POSITIVE), default=8)
    p.add_argument("--n-samples", type=number(POSITIVE), default=8,
                   help="Monte-Carlo samples of t (quadrature: nodes; count: masked-set draws) per sequence (diffusion)")
    p.add_argument("--estimator", choices=("mc", "quadrature", "count"), default="mc",
                   help="how the diffusion bound's integral over t is estimated (count: exactly, for time-free mdlm and bd3lm)")
    p.add_argument("--max-sequences", type=number(POSITIVE), default=None, help="evaluate at most this many blocks per data set")
    p.add_argument("--text-field", default="text", help="field of jsonl records")
    p.add_argument("--seed", type=number(NON_NEGATIVE), default=0)
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _seq2seq_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hyp", default=None, help="outputs: a DiffuSeq output folder (seed*.json), DiffuSeq jsonl (recover/reference/source) or one a line")
    p.add_argument("--ref", nargs="+", default=[], help="references: one file, or several aligned files (multi-reference)")
    p.add_argument("--src", default=None, help="sources, one a line")
    p.add_argument("--mbr", action="store_true", help="score the MBR choice among the candidates")
    p.add_argument("--candidates-file", nargs="+", default=[], help="one output file per seed (Self-BLEU, Div-4, MBR)")
    p.add_argument("--bertscore-model", default=None, help="local model folder for BERTScore (default: all-MiniLM-L6-v2 when installed; 'none': skip)")
    p.add_argument("--bertscore-layers", type=number(NON_NEGATIVE), default=None, help="layer for BERTScore (needed for non-default models)")
    p.add_argument("--no-progress", action="store_true")


def _degeneracy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hyp", required=True, help="outputs: DiffuSeq jsonl (recover field) or one a line")


def _gen_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint or run folder")
    p.add_argument("--judge", required=True, help="smollm2, a .gguf file, a Hugging Face causal-LM folder or a dlmkit AR folder")
    p.add_argument("--n", type=number(POSITIVE), default=1000, help="samples per row")
    p.add_argument("--steps", type=int_list(POSITIVE), default="32,128,1024", help="comma-separated diffusion steps (AR: ignored; plain + nucleus 0.95 rows)")
    p.add_argument("--length", type=number(POSITIVE), default=None, help="tokens per sample (default: the model's context)")
    p.add_argument("--batch-size", type=number(POSITIVE), default=16)
    p.add_argument("--judge-batch-size", type=number(POSITIVE), default=8)
    p.add_argument("--temperature", type=number(POSITIVE_REAL, float), default=1.0,
                   help="sampling temperature of every row (> 0; below 1: less diverse, lower perplexity)")
    p.add_argument("--sampler", default=None, help="a diffusion kind's sampler by name, as dlm sample --sampler (default: the kind's own)")
    p.add_argument("--seed", type=number(NON_NEGATIVE), default=0)
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--no-progress", action="store_true")


def _mauve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint or run folder")
    p.add_argument("--prompts", required=True, help="jsonl with a text field (or one document a line)")
    p.add_argument("--prompt-tokens", type=number(POSITIVE), default=50)
    p.add_argument("--continuation-tokens", type=number(POSITIVE), default=50)
    p.add_argument("--n", type=number(POSITIVE), default=None, help="use at most this many documents")
    p.add_argument("--seeds", type=int_list(NON_NEGATIVE), default="0,1,2,3,4", help="comma-separated seeds (new samples and k-means seed each)")
    p.add_argument("--steps", type=number(POSITIVE), default=128, help="diffusion steps")
    p.add_argument("--features", choices=("judge", "minilm"), default="judge")
    p.add_argument("--judge", default="smollm2", help="judge whose hidden states are the features (with --features judge)")
    p.add_argument("--num-buckets", type=int_or_word(POSITIVE, "auto"), default="auto", help="MAUVE k-means clusters ('auto': n/10)")
    p.add_argument("--kmeans-num-redo", type=number(POSITIVE), default=None)
    p.add_argument("--text-field", default="text")
    p.add_argument("--batch-size", type=number(POSITIVE), default=16)
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--no-progress", action="store_true")


def _harness_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint or run folder")
    p.add_argument("--tasks", required=True, help="comma-separated tasks (local: dlm_cloze, dlm_choice)")
    p.add_argument("--include-path", action="append", help="folder of task YAMLs (repeatable)")
    p.add_argument("--limit", type=count_or_fraction, default=None, help="items per task (an integer, or a fraction with a dot)")
    p.add_argument("--n-samples", type=number(POSITIVE), default=8, help="Monte-Carlo samples of the ELBO per request (diffusion)")
    p.add_argument("--steps", type=number(POSITIVE), default=128, help="diffusion steps for generation tasks")
    p.add_argument("--num-fewshot", type=number(NON_NEGATIVE), default=None)
    p.add_argument("--batch-size", type=number(POSITIVE), default=16)
    p.add_argument("--seed", type=number(NON_NEGATIVE), default=0)
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--no-progress", action="store_true")


def _latency_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="diffusion checkpoint/run folder, or a kind name with --random-init")
    p.add_argument("--ar", default=None, help="AR checkpoint or run folder to compare with")
    p.add_argument("--random-init", default=None, metavar="PRESET", help="time randomly initialised models of this preset's size")
    p.add_argument("--no-ar", action="store_true", help="with --random-init: no AR baseline")
    p.add_argument("--steps", type=int_list(POSITIVE), default="1,8,32,128,1024")
    p.add_argument("--lengths", type=int_list(POSITIVE), default="128,1024")
    p.add_argument("--batch", type=int_list(POSITIVE), default="1,32")
    p.add_argument("--repeats", type=number(POSITIVE), default=5)
    p.add_argument("--warmup", type=number(NON_NEGATIVE), default=1)
    p.add_argument("--sampler", default=None, help="diffusion sampler name (kind-specific)")
    p.add_argument("--max-timed-steps", type=number(POSITIVE), default=None, metavar="N",
                   help="time runs of more than N steps at N steps and scale (not for the cached masked sampler)")
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--plot", default=None, help="write a PNG like the paper's Figure 1")
    p.add_argument("--no-progress", action="store_true")


register(Task("ppl", ("eval", "ppl"), "zero-shot perplexity (bounds for diffusion models) on text files", _ppl_options,
              run=lazy("dlmkit.eval.tasks.perplexity:run_task"),
              render=lazy("dlmkit.eval.tasks.perplexity:render_result"),
              section=lazy("dlmkit.eval.tasks.perplexity:report_section"), rank=0))
register(Task("seq2seq", ("eval", "seq2seq"), "DiffuSeq metrics (BLEU, ROUGE-L, BERTScore, Dist-1, Self-BLEU, Div-4) of outputs",
              _seq2seq_options, run=lazy("dlmkit.eval.tasks.seq2seq:run_task"),
              render=lazy("dlmkit.eval.tasks.seq2seq:render")))
register(Task("gen", ("eval", "gen"), "generative perplexity (judge LM) and diversity of unconditional samples", _gen_options,
              run=lazy("dlmkit.eval.tasks.genppl:run_task"),
              render=lazy("dlmkit.eval.tasks.genppl:render_result"),
              section=lazy("dlmkit.eval.tasks.genppl:report_section"), rank=3))
register(Task("mauve", ("eval", "mauve"), "MAUVE of prompted continuations against the human ones", _mauve_options,
              run=lazy("dlmkit.eval.tasks.mauve:run_task"),
              render=lazy("dlmkit.eval.tasks.mauve:render_result"),
              section=lazy("dlmkit.eval.tasks.mauve:report_section"), entry="model", rank=2))
register(Task("harness", ("eval", "harness"), "lm-evaluation-harness tasks (offline with local task files)", _harness_options,
              run=lazy("dlmkit.eval.tasks.harness:run_task"),
              render=lazy("dlmkit.eval.tasks.harness:render_result"),
              section=lazy("dlmkit.eval.tasks.harness:report_section"), entry="model", rank=1))
register(Task("latency", ("bench", "latency"), "sampling time per sequence vs steps, against an AR model with KV cache", _latency_options,
              run=lazy("dlmkit.eval.tasks.latency:run_task"),
              render=lazy("dlmkit.eval.tasks.latency:render_latency_table"),
              section=lazy("dlmkit.eval.tasks.latency:report_section"), entry="rows", rank=4))
register(Task("degeneracy", ("eval", "degeneracy"), "fractions of empty outputs and of outputs dominated by one token",
              _degeneracy_options, run=lazy("dlmkit.eval.tasks.degeneracy:run_task"),
              render=lazy("dlmkit.eval.tasks.degeneracy:render_result")))
