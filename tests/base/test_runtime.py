"""Thread count and network precision: the defaults, the options, and the bad values."""

import subprocess
import sys

import pytest
import torch

from dlmkit import runtime
from dlmkit.cli import main


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
    runtime.set_network_autocast(True)


def test_default_threads_respect_omp_num_threads(monkeypatch, keep_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.default_threads() == 3
    assert runtime.set_threads() == 3 and torch.get_num_threads() == 3
    for bad in ("", "0", "x"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert runtime.default_threads() == runtime.physical_cores()
    assert 1 <= runtime.physical_cores() <= (torch.multiprocessing.cpu_count() or 1)


def test_threads_option_sets_torch_and_rejects_zero(keep_threads, capsys):
    assert runtime.set_threads(2) == 2 and torch.get_num_threads() == 2
    assert main(["sample", "nowhere", "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: dlm sample: argument --threads: must be >= 1, got 0 (see dlm sample --help)"


def test_threads_option_through_the_command_line():
    code = "import sys, torch; from dlmkit.cli import main; main(sys.argv[1:]); print('threads', torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code, "sample", "nowhere", "--threads", "1"], capture_output=True, text=True)
    assert "threads 1" in out.stdout and out.stderr.startswith("error:")


def test_bf16_autocast_only_on_cuda_and_only_when_on(monkeypatch, keep_threads):
    """No GPU here: the CUDA branch is checked with bf16 support mocked, without entering the context."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    ctx = runtime.network_autocast(torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16
    assert not isinstance(runtime.network_autocast("cpu"), torch.autocast)
    runtime.set_network_autocast(False)
    assert not isinstance(runtime.network_autocast(torch.device("cuda")), torch.autocast)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    runtime.set_network_autocast(True)
    assert not isinstance(runtime.network_autocast(torch.device("cuda")), torch.autocast)


def test_no_autocast_flag_reaches_the_setting(monkeypatch, keep_threads):
    seen = []
    monkeypatch.setattr(runtime, "set_network_autocast", seen.append)
    main(["sample", "nowhere", "--no-autocast"])
    main(["sample", "nowhere"])
    assert seen == [False, True]


@pytest.mark.parametrize("kind", ["mdlm", "sedd_absorb", "sedd_uniform", "ar"])
def test_kinds_sample_and_score_with_a_bf16_network(kind):
    """The CUDA path, on the CPU's autocast: the network's matmuls in bf16, sampling and the likelihood
    still work (in float32/float64) from its output."""
    from dlmkit.methods.base import Specials
    from dlmkit.hub.model import DlmModel
    from dlmkit.networks.transformer import BackboneConfig

    torch.manual_seed(0)
    model = DlmModel.build(kind, BackboneConfig(vocab_size=40, n_layers=1, d_model=32, n_heads=2, d_cond=16, seq_len=8),
                           Specials(eos=0, pad=1, mask=39, sep=2)).eval()
    x0 = torch.randint(3, 39, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.method.sample(model.net, 2, 8, steps=4, generator=torch.Generator().manual_seed(1))
        nll, _ = model.method.nll(model.net, x0, generator=torch.Generator().manual_seed(2), n_samples=2)
    top = 40 if kind == "sedd_uniform" else 39  # the uniform graph has no mask state
    assert out.tokens.shape == (2, 8) and ((out.tokens >= 0) & (out.tokens < top)).all()
    assert torch.isfinite(nll).all() and (nll > 0).all()
