"""The one-step student and the distiller on a tiny teacher: condition injection, the adversarial
update's direction, the CLI end to end, sampling the student, and exact resume."""

import json
import shutil

import torch

from dlmkit.cli import main
from dlmkit.data.seq2seq_blocks import target_mask
from dlmkit.diffusion import sid
from dlmkit.recipes.dlm_one import DistillConfig, Distillation, apply_overrides, stage_engine
from dlmkit.methods.diffuseq import DiffuSeqNet
from dlmkit.methods.dlm_one import OneStepSampler, one_step
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.sampling.continuous import Seq2SeqSampler
from dlmkit.diffusion.gaussian import GaussianDiffusion

torch.set_num_threads(1)
TINY_DISTILL = ["batch_size=4", "eval_n=8", "log_every=1", "eval_every=2", "save_every=2"]


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_condition_positions_are_never_altered():
    torch.manual_seed(0)
    net = DiffuSeqNet(BackboneConfig(vocab_size=50, n_layers=1, d_model=32, n_heads=2, d_cond=32, seq_len=10), emb_dim=8)
    rows = torch.randint(5, 50, (3, 10))
    rows[:, 4] = 2  # sep
    mask = target_mask(rows, 2)
    x_cond = net.embed(rows)
    z = torch.randn_like(x_cond)
    e = one_step(net.x0, x_cond, mask, z, 120)
    assert torch.equal(e[~mask], x_cond[~mask]) and not torch.equal(e[mask], x_cond[mask])
    diff = GaussianDiffusion.from_schedule("sqrt", 200)
    for refine in (0, 2):
        s = OneStepSampler(diff, net.x0, 149, logits_fn=net.logits, refine=refine)
        assert isinstance(s, Seq2SeqSampler)
        out = s.sample(x_cond, mask, generator=torch.Generator().manual_seed(1))
        assert out.nfe == 1 + refine
        assert torch.equal(out.embeddings[~mask], x_cond[~mask])


def distiller(teacher_run, tmp_path, extra=()):
    """Stage 1 of a run: its recipe (``.run``: teacher, data and options; ``.engine``: the engine)."""
    cfg = apply_overrides(DistillConfig(), [*TINY_DISTILL, *extra])
    run = Distillation(str(teacher_run), cfg, data=None, valid=None, device=None)
    return stage_engine(run, tmp_path / "d", 1, init_student=None, resume=False, progress=False).recipe


def test_training_sees_true_conditions_and_freezes_the_embeddings(teacher_run, tmp_path):
    d = distiller(teacher_run, tmp_path, ["stage1.b_adv=0.1"])
    seen = []
    real_x0 = d.run.t_net.x0

    def spy(x_t, t):
        seen.append(x_t.detach().clone())
        return real_x0(x_t, t)

    d.run.t_net.x0 = spy
    emb_before = d.g_net.word_emb.weight.detach().clone()
    sampler_state = dict(d.engine.sampler.state_dict())
    d.engine._train_step()
    # the batch this step drew
    d.engine.sampler.load_state_dict(sampler_state)
    rows = d.run.train_blocks.batch(d.run.train_blocks.train[d.engine.sampler.next_indices()])
    mask = target_mask(rows, d.run.sep)
    clean = d.run.t_net.embed(rows)
    assert seen and all(torch.equal(x[~mask], clean[~mask]) for x in seen)
    assert torch.equal(d.g_net.word_emb.weight, emb_before)
    assert all(not p.requires_grad for p in d.run.teacher.parameters())


def test_psi_learns_to_call_real_pairs_real(teacher_run, tmp_path):
    """Only the adversarial term of psi (a_dsm = 0), a large step size: after a few updates psi's
    logits are higher on real pairs than on generated ones (fails if Eq. 5's labels are swapped)."""
    d = distiller(teacher_run, tmp_path, ["stage1.a_dsm=0", "stage1.b_adv=1", "stage1.lr_psi=3e-3", "stage1.lr_theta=0", "stage1.a_sd=0"])
    for _ in range(6):
        d.engine._train_step()
    rows = d.run.train_blocks.batch(d.run.train_blocks.train[:16])
    mask = target_mask(rows, d.run.sep)
    with torch.no_grad():
        x_real = d.run.t_net.embed(rows)
        g = torch.Generator().manual_seed(0)
        x_g = one_step(d.g_net.x0, x_real, mask, torch.randn(x_real.shape, generator=g), d.run.cfg.t_init)
        t = torch.full((16,), 20)
        _, l_real = d.psi(d.run.diffusion.q_sample(x_real, t, mask, generator=g), t, mask)
        _, l_fake = d.psi(d.run.diffusion.q_sample(x_g, t, mask, generator=g), t, mask)
    assert l_real.mean() > l_fake.mean()
    assert sid.discriminator_loss(l_real, l_fake).mean() < 2 * torch.log(torch.tensor(2.0))


def test_cli_distill_then_sample_the_student(teacher_run, pair_file, tmp_path, capsys):
    out = tmp_path / "one"
    args = ["distill", "dlm-one", str(teacher_run), "--out", str(out), "--no-progress", "--json"]
    for item in [*TINY_DISTILL, "stage1.steps=4", "stage2.steps=2"]:
        args += ["--set", item]
    assert main(args) == 0
    res = last_json(capsys)
    assert res["stage1"]["steps"] == 4 and res["stage2"]["steps"] == 2 and res["t_init"] == 149
    assert 0.0 <= res["stage1"]["best_bleu"] <= 1.0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bleu" in m for m in metrics) and any("loss_psi" in m and "sid" in m for m in metrics)
    assert any(m.get("stage") == 2 and m.get("disc", 0) > 0 for m in metrics)
    student = res["student"]
    assert json.loads((tmp_path / "one" / "student" / "config.json").read_text())["kind"] == "dlm_one"

    hyp = tmp_path / "hyp.jsonl"
    assert main(["sample", student, "--src-file", str(pair_file), "--out", str(hyp), "--json"]) == 0
    s = last_json(capsys)
    assert s["kind"] == "dlm_one" and s["nfe"] == 1 and s["n_sources"] == 20
    assert len(hyp.read_text().splitlines()) == 20
    assert main(["sample", student, "--src-file", str(pair_file), "--sampler", "renoise-2", "--json"]) == 0
    assert last_json(capsys)["nfe"] == 3
    # a second run into the same folder needs --resume
    assert main(args) == 2


def test_resume_continues_exactly(teacher_run, tmp_path, capsys):
    base = ["distill", "dlm-one", str(teacher_run), "--no-progress", "--json"]
    sets = []
    for item in [*TINY_DISTILL, "stage1.steps=4", "stage2.steps=0", "keep_last=3", "stage1.b_adv=0.1"]:
        sets += ["--set", item]
    full = tmp_path / "full"
    assert main([*base, "--out", str(full), *sets]) == 0
    capsys.readouterr()
    # a run killed after its step-2 checkpoint: drop what came later, then resume
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "stage1" / "checkpoints" / "step_0000004")
    shutil.rmtree(cut / "student")
    (cut / "progress.json").write_text(json.dumps({"stage1": None, "stage2": None}))
    assert main([*base, "--out", str(cut), "--resume"]) == 0
    from safetensors.torch import load_file

    a = load_file(str(full / "stage1" / "checkpoints" / "step_0000004" / "train_state.safetensors"))
    b = load_file(str(cut / "stage1" / "checkpoints" / "step_0000004" / "train_state.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_each_update_reaches_only_its_own_network(teacher_run, tmp_path):
    """psi's update (Eq. 3 + Eq. 5) leaves the generator without gradients; theta's update (Eq. 4 +
    Eq. 6) adds none to psi or the teacher. Both optimisers are SiD's AdamW(betas=(0, 0.999)) without
    weight decay, and the frozen embedding table is in neither."""
    d = distiller(teacher_run, tmp_path, ["stage1.b_adv=0.1"])
    for opt in (d.engine.opt, d.opt_psi):
        for group in opt.param_groups:
            assert tuple(group["betas"]) == (0.0, 0.999) and group["weight_decay"] == 0.0
    in_opt = {id(p) for opt in (d.engine.opt, d.opt_psi) for group in opt.param_groups for p in group["params"]}
    assert id(d.g_net.word_emb.weight) not in in_opt and id(d.psi.net.word_emb.weight) not in in_opt
    seen: dict[str, object] = {}
    psi_step = d.opt_psi.step

    def record_psi_step(*args, **kwargs):
        seen["student_grads"] = [p.grad for p in d.student.parameters()]
        seen["disc_head_grad"] = d.psi.disc_head[2].weight.grad is not None
        out = psi_step(*args, **kwargs)
        seen["psi_grads"] = {n: (None if p.grad is None else p.grad.clone()) for n, p in d.psi.named_parameters()}
        return out

    d.opt_psi.step = record_psi_step
    d.engine._train_step()
    assert all(g is None for g in seen["student_grads"])
    assert seen["disc_head_grad"]
    for n, p in d.psi.named_parameters():
        before = seen["psi_grads"][n]
        assert (p.grad is None and before is None) or torch.equal(p.grad, before), n
    assert all(p.grad is None for p in d.run.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.student.parameters())
