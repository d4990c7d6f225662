"""DiffuSeq (Gong et al. 2022): Gaussian diffusion in a learnt word-embedding space, seq2seq.

A row is ``[src, sep, trg, eos, pad...]`` (see ``dlmkit.data.seq2seq_blocks``). Tokens are
embedded by a learnt table ``E [V, D]``; only the target region (after the first sep, padding
included) is noised ("partial noising"), the source stays clean and conditions the
denoiser through full self-attention. The network predicts ``x_0`` from ``x_t`` and ``t``; the
rounding head is tied to the table (``logits = x @ E^T``). The loss is
``dlmkit.diffusion.gaussian.training_losses`` (x0 MSE + t0 term + prior term + rounding);
samplers are ``dlmkit.sampling.continuous`` (DDPM over all T steps, DDIM on K respaced steps).

Options come from the run config's ``diffusion.continuous`` section
(:class:`dlmkit.engine.config.ContinuousConfig`), stored in the checkpoint's ``options["continuous"]``.

For distillation (DLM-One) the network is a small module with clear parts:
``net.word_emb`` (the ``nn.Embedding``), ``net.transformer`` (the shared backbone),
``net.x0(x_t, t)`` (the denoiser), ``net.embed(ids)``, ``net.logits(x)``; and
``DiffuSeq.make_sampler(net, ...)`` returns a ``Seq2SeqSampler``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dlmkit.data.seq2seq_blocks import target_mask
from dlmkit.diffusion.gaussian import GaussianDiffusion, get_time_sampler, training_losses
from dlmkit.errors import DlmError
from dlmkit.methods.base import SOURCE_ROWS, Method, SampleOutput, register
from dlmkit.networks.diffuseq import DiffuSeqNet, unwrap
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.sampling.continuous import DDIMSampler, DDPMSampler, Seq2SeqSampler

DEFAULTS: dict[str, Any] = {
    "emb_dim": 128,
    "timesteps": 2000,
    "schedule": "sqrt",
    "t_sampler": "uniform",
    "x0_std": None,
    "anchor_weight": 0.0,
    "emb_init_std": 1.0,
    "sampler": "ddim",
    "eta": 0.0,
    "clamp_step": 0,
    "decode": "logits",
}


@register
class DiffuSeq(Method):
    kind = "diffuseq"
    causal = False
    time_conditioned = True
    nll_is_bound = False
    data_format = "seq2seq"
    extra_options = ("sampler", "eta", "clamp_step", "decode")
    # its objective (unweighted x0 MSE + rounding) is not a likelihood bound: no perplexity
    has_likelihood = False
    prompts = frozenset({SOURCE_ROWS})
    instead = {"likelihood": "diffuseq has no likelihood: its loss is not an NLL bound; evaluate it with `dlm eval seq2seq` (BLEU, ROUGE-L, ...)"}

    def __init__(self, vocab_size: int, specials: Any, options: dict[str, Any] | None = None):
        super().__init__(vocab_size, specials, options)
        cont = dict(self.options.get("continuous") or {})
        unknown = set(cont) - set(DEFAULTS)
        if unknown:
            raise DlmError(f"diffuseq: unknown continuous options {sorted(unknown)} (known: {', '.join(DEFAULTS)})")
        self.opts = {**DEFAULTS, **cont}
        self.diffusion = GaussianDiffusion.from_schedule(self.opts["schedule"], int(self.opts["timesteps"]))
        self.T = self.diffusion.num_timesteps
        self.time_sampler = get_time_sampler(self.opts["t_sampler"], self.T)
        self._check_sampling(self.opts)

    def build_network(self, cfg: BackboneConfig) -> nn.Module:
        return DiffuSeqNet(cfg, int(self.opts["emb_dim"]), float(self.opts["emb_init_std"]))

    # ---- training ----------------------------------------------------------------------------

    def target_mask(self, x0: Tensor) -> Tensor:
        return target_mask(x0, self.specials.sep)

    def _draw_t(self, batch: int, generator: torch.Generator, train: bool) -> tuple[Tensor, Tensor]:
        gen = generator
        if generator.device.type != "cpu":  # time samplers draw on the CPU
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
            gen = torch.Generator().manual_seed(seed)
        if not train:  # validation: plain uniform t, so the number does not drift with the sampler
            t = torch.randint(0, self.T, (batch,), generator=gen)
            return t, torch.ones(batch)
        return self.time_sampler.sample(batch, generator=gen)

    def loss(self, net: nn.Module, x0: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """DiffuSeq's loss (not in nats: squared-error terms plus the rounding NLL), mean over rows.

        With ``t_sampler=lossaware`` the per-row losses are importance weighted and fed back to
        the sampler (training mode only; its history is saved in the training state, see
        :meth:`train_state`).
        """
        inner = unwrap(net)
        mask = self.target_mask(x0)
        t, w = self._draw_t(x0.shape[0], generator, inner.training)
        t, w = t.to(x0.device), w.to(x0.device)
        terms = training_losses(
            self.diffusion,
            lambda x, tt: net(x, tt),  # through the wrapper (DDP hooks)
            inner.logits,
            inner.embed(x0),
            x0,
            mask,
            t,
            generator=generator,
            x0_std=self.opts["x0_std"],
            anchor_weight=float(self.opts["anchor_weight"]),
        )
        if inner.training:
            self.time_sampler.update(t.cpu(), terms.loss.detach().cpu())
        loss = (terms.loss * w).mean()
        return loss, {k: float(getattr(terms, k).detach().mean()) for k in ("mse", "tT", "rounding")}

    def train_state(self) -> dict[str, Tensor]:
        """The time sampler's state (the loss-aware sampler's loss history) as tensors."""
        return {f"time_sampler/{k}": torch.as_tensor(v) for k, v in self.time_sampler.state_dict().items()}

    def load_train_state(self, state: dict[str, Tensor]) -> None:
        prefix = "time_sampler/"
        saved = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not saved:
            return
        try:
            self.time_sampler.load_state_dict(saved)
        except (KeyError, ValueError) as e:
            raise DlmError(f"the saved time sampler state does not fit t_sampler={self.opts['t_sampler']} ({e})") from None

    # ---- sampling ----------------------------------------------------------------------------

    def _check_sampling(self, o: dict[str, Any]) -> None:
        if o["sampler"] not in ("ddim", "ddpm"):
            raise DlmError(f"diffuseq sampler must be 'ddim' or 'ddpm', got {o['sampler']!r}")
        if o["decode"] not in ("logits", "nearest"):
            raise DlmError(f"diffuseq decode must be 'logits' or 'nearest', got {o['decode']!r}")

    def make_sampler(self, net: nn.Module, steps: int, **options: Any) -> Seq2SeqSampler:
        """A ``Seq2SeqSampler`` over this network: DDIM on ``steps`` respaced steps or DDPM (all T).

        ``options`` override the trained defaults: ``sampler``, ``eta``, ``clamp_step`` (None:
        never clamp), ``decode``.
        """
        unknown = set(options) - set(self.extra_options)
        if unknown:
            raise DlmError(f"diffuseq takes no sampling option {', '.join(sorted(unknown))} (it takes: {', '.join(self.extra_options)})")
        o = {**self.opts, **options}
        self._check_sampling(o)
        inner = unwrap(net)
        kw = dict(logits_fn=inner.logits, embedding=inner.word_emb.weight, decode=o["decode"], clamp_step=o["clamp_step"])
        if o["sampler"] == "ddpm":
            return DDPMSampler(self.diffusion, inner.x0, **kw)
        if not 1 <= steps <= self.T:
            raise DlmError(f"steps must be in [1, {self.T}] for this model, got {steps}")
        return DDIMSampler(self.diffusion, inner.x0, steps, eta=float(o["eta"]), **kw)

    @torch.no_grad()
    def sample(
        self,
        net: nn.Module,
        batch: int,
        length: int,
        *,
        steps: int,
        generator: torch.Generator,
        condition: Any = None,
        **options: Any,
    ) -> SampleOutput:
        """Fill the target region of ``condition`` (LongTensor rows ``[batch or 1, length]``
        framed as ``src sep ...``, see ``dlmkit.data.seq2seq_blocks.frame_rows``).

        Returns the whole rows: source positions are copied from ``condition`` unchanged, target
        positions hold the decoded tokens. ``nfe``: network calls.
        """
        if condition is None:
            raise DlmError("diffuseq generates targets for sources: give source rows (dlm sample --src-file)")
        inner = unwrap(net)
        rows = torch.as_tensor(condition, dtype=torch.long, device=inner.word_emb.weight.device)
        if rows.ndim == 1:
            rows = rows[None]
        if rows.shape[0] == 1 and batch > 1:
            rows = rows.expand(batch, -1)
        if rows.shape[1] != length:
            raise DlmError(f"source rows have {rows.shape[1]} positions but length={length}")
        mask = self.target_mask(rows)
        out = self.make_sampler(inner, steps, **options).sample(inner.embed(rows), mask, generator=generator)
        tokens = torch.where(mask, out.token_ids, rows)
        return SampleOutput(tokens=tokens, nfe=out.nfe)

    def target_ids(self, row: Any) -> list[int]:
        """Generated target tokens of one row: after the first sep, up to the first eos/sep, pads dropped."""
        ids = [int(i) for i in row]
        sp = self.specials
        if sp.sep in ids:
            ids = ids[ids.index(sp.sep) + 1 :]
        out = []
        for i in ids:
            if i in (sp.eos, sp.sep):
                break
            if i != sp.pad:
                out.append(i)
        return out
