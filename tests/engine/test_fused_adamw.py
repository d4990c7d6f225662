"""The training loop's optimiser: fused AdamW on CPU/CUDA, the same updates as the foreach one."""

import torch

from dlmkit.recipes.pretrain import Trainer


def test_fused_adamw_matches_foreach():
    torch.manual_seed(0)
    params = [torch.randn(16, 8), torch.randn(8)]
    runs = []
    for kw in ({"foreach": True}, {"fused": True}):
        ps = [p.clone().requires_grad_() for p in params]
        opt = torch.optim.AdamW([{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}], lr=1e-2, **kw)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        runs.append(ps)
    for a, b in zip(*runs):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-6)


def test_trainer_uses_fused_adamw(tiny_cfg):
    trainer = Trainer(tiny_cfg(), progress=False)
    assert trainer.opt.defaults["fused"] is True
