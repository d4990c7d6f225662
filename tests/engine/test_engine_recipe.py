"""The engine drives any recipe: a second network with its own optimiser, a whole training step of
the recipe's own and an end-of-step hook; the extra network's weights and optimiser state are saved
and resumed with everything else, so a run stopped and resumed equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from dlmkit.engine.distributed import average_gradients
from dlmkit.engine.loop import Engine, resume_config
from dlmkit.recipes.pretrain import Pretrain, Trainer


class TwoNetworks(Pretrain):
    """The kind's loss for the model, and an auxiliary linear map fitted to the model's output
    embedding by its own SGD-with-momentum step, with noise from the engine's generator."""

    def __init__(self):
        super().__init__()
        self.hook_steps: list[int] = []

    def networks(self, engine: Engine) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
        d = engine.cfg.model.d_model
        self.aux = nn.Linear(d, d).to(engine.info.device)  # initialised from the run's seeded global RNG
        return {"aux": (self.aux, torch.optim.SGD(self.aux.parameters(), lr=0.1, momentum=0.9))}

    def train_step(self, engine: Engine, x: torch.Tensor) -> tuple[float, dict[str, float]]:
        loss, metrics = super().train_step(engine, x)
        _, opt = engine.networks["aux"]
        emb = next(p for n, p in engine.model.net.named_parameters() if "embed" in n).detach()[:8]
        noise = torch.randn(emb.shape, generator=engine.gen, device=emb.device)
        aux_loss = (self.aux(emb + 0.1 * noise) - emb).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        opt.step()
        return loss, {**metrics, "aux": float(aux_loss.detach())}

    def end_of_step(self, engine: Engine) -> None:
        self.hook_steps.append(engine.step)


def _records(run) -> list[dict]:
    """metrics.jsonl without the wall-clock throughput."""
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in rec.items() if k != "tokens_per_s"} for rec in recs]


def _state(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "step_0000006" / "train_state.safetensors"))


def test_a_recipe_with_two_networks_resumes_exactly(tiny_cfg, tmp_path):
    torch.set_num_threads(1)
    sets = ["train.steps=6", "train.save_every=3", "train.eval_every=3", "train.schedule=constant", "train.sample_every=0"]
    full = TwoNetworks()
    Engine(tiny_cfg("full", *sets), full, progress=False).fit()
    assert full.hook_steps == [1, 2, 3, 4, 5, 6]
    Engine(tiny_cfg("cut", *sets[1:], "train.steps=3"), TwoNetworks(), progress=False).fit()
    second = TwoNetworks()
    Engine(resume_config(tmp_path / "cut", ["train.steps=6"]), second, resume=True, progress=False).fit()
    assert second.hook_steps == [4, 5, 6]
    a, b = _state(tmp_path / "full"), _state(tmp_path / "cut")
    assert any(k.startswith("net/aux/") for k in a) and any(k.startswith("optim:aux/") for k in a)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _records(tmp_path / "full") == _records(tmp_path / "cut")


def test_trainer_is_the_engine_on_the_pretrain_recipe(tiny_cfg):
    trainer = Trainer(tiny_cfg("run", "train.steps=1"), progress=False)
    try:
        assert isinstance(trainer, Engine) and isinstance(trainer.recipe, Pretrain) and trainer.networks == {}
    finally:
        trainer.close()


def _average_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        p, q = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
        p.grad = torch.full((3,), float(rank + 1))  # q has no gradient: left alone
        average_gradients([p, q])
        if rank == 1:
            torch.save({"p": p.grad, "q": q.grad}, out)
    finally:
        dist.destroy_process_group()


def test_average_gradients_over_two_processes(tmp_path):
    """The data parallelism of multi-optimiser recipes (DLM-One): each gradient becomes the mean
    over the processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "grads.pt"
    mp.spawn(_average_worker, args=(2, port, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    assert torch.equal(got["p"], torch.full((3,), 1.5)) and got["q"] is None
