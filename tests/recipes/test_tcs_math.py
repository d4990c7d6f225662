"""TCS targets and losses against brute-force enumeration of a teacher's joint distribution."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from dlmkit.diffusion.tcs import estimate_target
from dlmkit.recipes.tcs import TCSLoss
from dlmkit.hub.teachers import Teacher
from dlmkit.errors import DlmError
from dlmkit.methods.base import Specials
from dlmkit.methods.mdlm import MaskedDiffusion
from dlmkit.methods.sedd import SEDDAbsorb

N_REAL, LENGTH = 3, 4
MASK = N_REAL  # vocabulary: real tokens 0..2, mask 3
SPECIALS = Specials(eos=0, pad=0, mask=MASK, sep=0)


def markov_teacher(seed: int = 0, n_real: int = N_REAL) -> tuple[Teacher, torch.Tensor, torch.Tensor]:
    """An explicit first-order Markov AR distribution over real tokens, wrapped as a teacher."""
    g = torch.Generator().manual_seed(seed)
    init = torch.rand(n_real, generator=g, dtype=torch.float64) + 0.1
    trans = torch.rand(n_real, n_real, generator=g, dtype=torch.float64) ** 2 + 0.05
    init, trans = init / init.sum(), trans / trans.sum(-1, keepdim=True)

    def logits_fn(ids: torch.Tensor) -> torch.Tensor:
        prev = ids[:, 1:].clamp_max(n_real - 1)  # position j >= 1 predicts from token j - 1
        out = torch.cat([init.log().expand(ids.shape[0], 1, n_real), trans.log()[prev]], dim=1)
        return out.float()

    return Teacher(logits_fn, vocab_size=n_real + 1, start_id=0, excluded=[n_real]), init, trans


def joint_of(teacher: Teacher, n_real: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every real sequence and its probability, from the teacher's own next-token distributions."""
    seqs = torch.tensor(list(itertools.product(range(n_real), repeat=length)))
    logp = teacher.token_logprobs(seqs).double().sum(-1)
    return seqs, logp.exp()


def brute_conditional(seqs, probs, x: torch.Tensor, i: int, vocab: int) -> torch.Tensor:
    """p(y | x_-i) over the full vocabulary (0 for tokens outside the real ones)."""
    out = torch.zeros(vocab, dtype=torch.float64)
    for y in range(vocab):
        nb = x.clone()
        nb[i] = y
        hit = (seqs == nb).all(-1)
        out[y] = probs[hit].sum() if hit.any() else 0.0
    return out / out.sum()


def brute_left(seqs, probs, x: torch.Tensor, i: int, vocab: int) -> torch.Tensor:
    """p(y | x_<i) by marginalising the joint."""
    out = torch.zeros(vocab, dtype=torch.float64)
    prefix = (seqs[:, :i] == x[:i]).all(-1)
    for y in range(vocab):
        out[y] = probs[prefix & (seqs[:, i] == y)].sum()
    return out / out.sum()


def sample_sequences(seqs, probs, n, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return seqs[torch.multinomial(probs, n, replacement=True, generator=g)]


def all_positions(x):
    return torch.ones_like(x, dtype=torch.bool)


@pytest.mark.parametrize("which", ["markov", "dlmkit_ar"])
def test_exact_topk_left_match_brute_force(which):
    if which == "markov":
        teacher, *_ = markov_teacher()
        n_real, vocab, length = N_REAL, N_REAL + 1, LENGTH
    else:  # a random tiny dlmkit AR transformer: real tokens 0..4, mask 5
        from dlmkit.hub.model import DlmModel
        from dlmkit.networks.transformer import BackboneConfig

        torch.manual_seed(0)
        n_real, vocab, length = 5, 6, 3
        bb = BackboneConfig(vocab_size=vocab, n_layers=1, d_model=16, n_heads=2, d_cond=8, seq_len=8)
        model = DlmModel.build("ar", bb, Specials(eos=0, pad=0, mask=5, sep=0), {}).eval()
        with torch.no_grad():
            for p in model.net.parameters():
                p.mul_(4.0)  # a peaky distribution, far from uniform
        teacher = Teacher(model.net, vocab_size=vocab, start_id=0, excluded=[5], max_len=8)
    seqs, probs = joint_of(teacher, n_real, length)
    x = sample_sequences(seqs, probs, 5, seed=1)
    exact = estimate_target(teacher, x, all_positions(x), "exact", batch=7)
    topk = estimate_target(teacher, x, all_positions(x), "topk", k=vocab, batch=5)
    left = estimate_target(teacher, x, all_positions(x), "left")
    dense_topk = topk.dense(vocab).exp().double()
    for n, (b, i) in enumerate(zip(exact.b.tolist(), exact.i.tolist())):
        want = brute_conditional(seqs, probs, x[b], i, vocab)
        torch.testing.assert_close(exact.logq[n].exp().double(), want, atol=2e-5, rtol=0)
        torch.testing.assert_close(dense_topk[n], want, atol=2e-5, rtol=0)
        torch.testing.assert_close(left.logq[n].exp().double(), brute_left(seqs, probs, x[b], i, vocab), atol=2e-5, rtol=0)
    assert exact.logq[:, -1].exp().max() == 0  # the mask is never a target


def test_topk_keeps_true_token_and_counts_cost():
    teacher, *_ = markov_teacher()
    seqs, probs = joint_of(teacher, N_REAL, LENGTH)
    x = sample_sequences(seqs, probs, 4, seed=2)
    rows0 = teacher.forward_rows
    tgt = estimate_target(teacher, x, all_positions(x), "topk", k=1)
    assert tgt.ids.shape == (x.numel(), 2)
    q = tgt.dense(N_REAL + 1).exp()
    assert (q[torch.arange(x.numel()), x.flatten()] > 0).all()  # the true token is always a candidate
    torch.testing.assert_close(q.sum(-1), torch.ones(x.numel()))
    # one left pass over the batch + at most K rescoring rows per target position
    assert teacher.forward_rows - rows0 <= x.shape[0] + x.numel()


class TableNet(nn.Module):
    """A lookup table of logits for every noisy sequence: a student that can represent anything."""

    def __init__(self, vocab: int, length: int):
        super().__init__()
        self.vocab, self.length = vocab, length
        self.table = nn.Parameter(torch.zeros(vocab**length, length, vocab))

    def forward(self, x, cond=None, **_):
        idx = (x * self.vocab ** torch.arange(self.length - 1, -1, -1)).sum(-1)
        return self.table[idx]


@pytest.mark.parametrize("kind", ["mdlm", "sedd_absorb"])
def test_alpha_zero_is_the_kinds_data_loss(kind):
    teacher, *_ = markov_teacher()
    seqs, probs = joint_of(teacher, N_REAL, LENGTH)
    cls = MaskedDiffusion if kind == "mdlm" else SEDDAbsorb
    method = cls(N_REAL + 1, SPECIALS, {})
    torch.manual_seed(0)
    net = TableNet(N_REAL + 1, LENGTH)
    with torch.no_grad():
        net.table.normal_()
    x0 = sample_sequences(seqs, probs, 16, seed=3)
    want, _ = method.loss(net, x0, torch.Generator().manual_seed(5))
    got, metrics = TCSLoss(teacher, estimator="exact", alpha=0.0)(method, net, x0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, want)
    mixed, m2 = TCSLoss(teacher, estimator="exact", alpha=0.3)(method, net, x0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(mixed, 0.3 * torch.tensor(m2["tcs"]) + 0.7 * torch.tensor(m2["data"]), atol=1e-5, rtol=1e-5)
    assert "teacher_tok_per_target" in m2


@pytest.mark.parametrize("kind", ["mdlm", "sedd_absorb"])
def test_student_on_exact_target_recovers_conditionals(kind):
    """Minimising TCS against the exact target puts the student's denoiser at p(y | x_-i)."""
    n_real, length, vocab = 3, 3, 4
    teacher, *_ = markov_teacher(seed=4, n_real=n_real)
    seqs, probs = joint_of(teacher, n_real, length)
    method = (MaskedDiffusion if kind == "mdlm" else SEDDAbsorb)(vocab, SPECIALS, {"t_sampling": "uniform"})
    torch.manual_seed(0)
    net = TableNet(vocab, length)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    loss_fn = TCSLoss(teacher, estimator="exact", alpha=1.0)
    gen = torch.Generator().manual_seed(0)
    data = sample_sequences(seqs, probs, 64 * 600, seed=5)
    for step in range(600):
        loss, _ = loss_fn(method, net, data[step * 64 : (step + 1) * 64], gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    worst = 0.0
    with torch.no_grad():
        for x in seqs:
            for i in range(length):
                x_t = x.clone()
                x_t[i] = MASK
                if kind == "mdlm":
                    got = method.denoiser(net)(x_t[None], torch.tensor([1.0]))[0, i].exp()
                else:
                    s = method.score_fn(net)(x_t[None], torch.tensor([1.0]))[0, i].exp()
                    got = s.masked_fill(torch.arange(vocab) == MASK, 0.0)
                    got = got / got.sum()
                want = brute_conditional(seqs, probs, x, i, vocab)
                worst = max(worst, (got.double() - want).abs().max().item())
    assert worst < 0.03, worst


def test_tokenizer_mismatch_is_an_error():
    from dlmkit.data.tokenizer import train_bpe

    a = train_bpe(["the cat sat on the mat " * 20], 280)
    b = train_bpe(["a dog ran in the fog " * 20], 280)
    teacher = Teacher(lambda ids: torch.zeros(*ids.shape, a.vocab_size), vocab_size=a.vocab_size, start_id=a.eos_id, tokenizer=a)
    teacher.check_tokenizer(a)
    with pytest.raises(DlmError, match="teacher's tokenizer"):
        teacher.check_tokenizer(b)


def test_bad_options_are_errors():
    teacher, *_ = markov_teacher()
    x = torch.zeros(1, LENGTH, dtype=torch.long)
    with pytest.raises(DlmError, match="estimator"):
        estimate_target(teacher, x, all_positions(x), "nope")
    with pytest.raises(DlmError, match="alpha"):
        TCSLoss(teacher, alpha=2.0)
