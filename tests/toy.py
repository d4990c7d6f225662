"""Tiny enumerable data distributions and their exact diffusion quantities (the 'perfect network').

Everything here is computed independently of dlmkit's closed forms: per-token transitions come from
torch.linalg.matrix_exp(sigma Q) with Q written from its definition (Q[y, x] = rate x -> y), and all
marginals, ratios and posteriors are sums over every sequence.
"""

from __future__ import annotations

import itertools
import math

import torch


def random_categorical(n_real: int, length: int, seed: int) -> torch.Tensor:
    """A random distribution over all n_real^length sequences (lexicographic order)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n_real**length, generator=g, dtype=torch.float64) ** 2 + 0.02
    return w / w.sum()


def markov_chain(n_real: int, length: int, seed: int) -> torch.Tensor:
    """A random first-order Markov chain with strong (but all positive) transitions."""
    g = torch.Generator().manual_seed(seed)
    init = torch.rand(n_real, generator=g, dtype=torch.float64) + 0.1
    trans = torch.rand(n_real, n_real, generator=g, dtype=torch.float64) ** 3 + 0.03
    init, trans = init / init.sum(), trans / trans.sum(-1, keepdim=True)
    probs = []
    for seq in itertools.product(range(n_real), repeat=length):
        p = init[seq[0]]
        for a, b in zip(seq, seq[1:]):
            p = p * trans[a, b]
        probs.append(p)
    return torch.stack(probs)


def rate_matrix(kind: str, vocab: int, mask_id: int | None) -> torch.Tensor:
    """Q[y, x] = forward rate x -> y, columns summing to zero."""
    if kind == "absorbing":
        q = torch.zeros(vocab, vocab, dtype=torch.float64)
        for x in range(vocab):
            if x != mask_id:
                q[mask_id, x], q[x, x] = 1.0, -1.0
        return q
    return torch.full((vocab, vocab), 1.0 / vocab, dtype=torch.float64) - torch.eye(vocab, dtype=torch.float64)


class Toy:
    """Data over real-token sequences embedded in the full vocabulary, with exact forward quantities.

    kind 'absorbing': vocab = n_real + 1 with the mask at ``mask_id``; kind 'uniform': vocab = n_real.
    """

    def __init__(self, real_probs: torch.Tensor, n_real: int, length: int, kind: str, mask_id: int | None = None):
        self.kind, self.length, self.mask_id = kind, length, mask_id
        self.vocab = n_real + (1 if kind == "absorbing" else 0)
        self.real = [v for v in range(self.vocab) if v != mask_id]
        self.states = torch.tensor(list(itertools.product(range(self.vocab), repeat=length)))
        self.n_states = self.states.shape[0]
        self.data = torch.zeros(self.n_states, dtype=torch.float64)
        for k, seq in enumerate(itertools.product(self.real, repeat=length)):
            self.data[self.index(torch.tensor([seq]))] = real_probs[k]
        self.q = rate_matrix(kind, self.vocab, mask_id)
        pos, y = torch.meshgrid(torch.arange(length), torch.arange(self.vocab), indexing="ij")
        nbr = self.states.unsqueeze(1).unsqueeze(1).repeat(1, length, self.vocab, 1)  # [S, L, V, L]
        nbr[:, pos, y, pos] = y
        self.neighbours = self.index(nbr)  # [S, L, V]: index of x with x^i := y

    def index(self, x: torch.Tensor) -> torch.Tensor:
        powers = self.vocab ** torch.arange(self.length - 1, -1, -1)
        return (x * powers).sum(-1)

    def token_transition(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """T[..., y, x] = p_sigma(y | x), batched over a tensor of sigmas."""
        return torch.linalg.matrix_exp(torch.as_tensor(sigma, dtype=torch.float64)[..., None, None] * self.q)

    def joint_transition(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """K[..., a, b] = q_sigma(x_t = state a | x0 = state b)."""
        t = self.token_transition(sigma)
        k = torch.ones(*t.shape[:-2], self.n_states, self.n_states, dtype=torch.float64)
        for i in range(self.length):
            k = k * t[..., self.states[:, i].unsqueeze(1), self.states[:, i].unsqueeze(0)]
        return k

    def marginal(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """p_sigma over all states, [..., S]."""
        return self.joint_transition(sigma) @ self.data

    def score_fn(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Exact log p_sigma(x^i := y) / p_sigma(x), [B, L, V]."""
        uniq, inv = sigma.double().unique(return_inverse=True)
        logp = self.marginal(uniq).log()  # [U, S]
        idx = self.index(x)
        return logp[inv[:, None, None], self.neighbours[idx]] - logp[inv, idx][:, None, None]

    def posterior(self, sigma: float) -> torch.Tensor:
        """p(x0^i = y | x_sigma = state) for every state: [S, L, V]."""
        joint = self.joint_transition(sigma) * self.data.unsqueeze(0)  # [x_t, x0]
        onehot = torch.nn.functional.one_hot(self.states, self.vocab).double()  # [x0, L, V]
        return torch.einsum("ab,biv->aiv", joint, onehot) / joint.sum(1)[:, None, None]

    def denoise_fn(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Exact SUBS log p(x0^i | x_t) under masking (independent of sigma)."""
        if "post" not in self.__dict__:
            self.post = self.posterior(1.0).log()
        return self.post[self.index(x)]

    def nll(self, x0: torch.Tensor) -> torch.Tensor:
        return -self.data[self.index(x0)].log()

    def support(self) -> torch.Tensor:
        """The data sequences [N, L] with positive probability."""
        return self.states[self.data > 0]

    def conditional(self, positions: list[int], token_ids: list[int]) -> "Toy":
        """The same toy with data p(x | x^positions = token_ids)."""
        toy = Toy.__new__(Toy)
        toy.__dict__.update({k: v for k, v in self.__dict__.items() if k != "post"})
        held = (self.states[:, positions] == torch.tensor(token_ids)).all(-1)
        toy.data = torch.where(held, self.data, 0.0) / self.data[held].sum()
        return toy


def histogram(toy: Toy, samples: torch.Tensor) -> torch.Tensor:
    return torch.bincount(toy.index(samples), minlength=toy.n_states).double() / samples.shape[0]


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def tv_tolerance(n_outcomes: int, n_samples: int, delta: float = 1e-6) -> float:
    """P(TV(empirical, true) >= eps) <= 2^K exp(-2 N eps^2) (Bretagnolle-Huber-Carol); solve for eps."""
    return math.sqrt((n_outcomes * math.log(2) + math.log(1 / delta)) / (2 * n_samples))


def exact_point(toy: Toy, terms):
    """A likelihood PointFn that averages ``terms(x0, x_t, sigma) -> (diff, rec)`` over every x_t exactly."""
    def point(x0, sigma, generator):
        diff, rec = torch.empty(x0.shape[0], dtype=torch.float64), torch.empty(x0.shape[0], dtype=torch.float64)
        for s in sigma.unique().tolist():
            rows = (sigma == s).nonzero().squeeze(1)
            weight = toy.joint_transition(s)[:, toy.index(x0[rows])].T  # [b, S] = q(x_t | x0)
            xx0 = x0[rows].repeat_interleave(toy.n_states, 0)
            xt = toy.states.repeat(len(rows), 1)
            d, r = terms(xx0, xt, torch.full((xx0.shape[0],), s, dtype=torch.float64))
            live = weight.reshape(-1) > 0
            d, r = torch.where(live, d, 0.0), torch.where(live, r, 0.0)
            diff[rows] = (weight * d.view(len(rows), -1)).sum(1)
            rec[rows] = (weight * r.view(len(rows), -1)).sum(1)
        return diff, rec
    return point


def model_nll(toy: Toy, x0: torch.Tensor, sigma0: float, terms) -> torch.Tensor:
    """-log p_model(x0) for the exact reverse process down to sigma0 followed by the factorised denoiser
    whose -log p(x0 | x_t) is ``terms(...)[1]``: p_model(x0) = sum_x p_sigma0(x) p_theta(x0 | x)."""
    out = []
    for row in x0:
        sig = torch.full((toy.n_states,), sigma0, dtype=torch.float64)
        rec = terms(row.expand(toy.n_states, -1), toy.states, sig)[1]
        out.append(-(toy.marginal(sigma0) * torch.exp(-rec)).sum().log())
    return torch.stack(out)


def pairs(toy: Toy, sigma: float):
    """Every (x0, x_t) with p(x0) q_sigma(x_t | x0) > 0: x0 [P, L], x_t [P, L], that probability [P]."""
    joint = toy.joint_transition(sigma) * toy.data.unsqueeze(0)  # [x_t, x0]
    xt_idx, x0_idx = (joint > 0).nonzero(as_tuple=True)
    return toy.states[x0_idx], toy.states[xt_idx], joint[xt_idx, x0_idx]
