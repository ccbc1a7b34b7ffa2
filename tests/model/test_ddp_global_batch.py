"""DDP computes the batch-level losses on the global batch: 2 gloo processes == 1 process.

Two processes (``torch.multiprocessing.spawn``, gloo on the loopback interface) each take a
shard of one fixed global batch, run a tiny DDP-wrapped SCR2Net and the training loss
(``train._loss``), and write their loss terms and averaged gradients; one process on the whole
batch must give the same values.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

from napari_scr2st.config import TrainConfig
from napari_scr2st.model.losses import clip_loss, energy_distance
from napari_scr2st.model.scr2net import SCR2Net
from napari_scr2st.model.train import _loss

N, D, G = 12, 6, 5
# case -> (config, rows of rank 0 (rank 1 takes the rest))
CASES = {
    # every term: MSE and soft labels per rank, CLIP and energy on the global batch
    "even": (
        TrainConfig(mode="full", energy_loss=True, lambda_energy=0.3, lambda_soft=0.5, k=3, m=0),
        6,
    ),
    # uneven shards (5 + 7): CLIP alone, whose value cannot depend on the split
    "uneven": (TrainConfig(mode="retrieval"), 5),
}


def _batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(N, D, generator=g), torch.rand(N, G, generator=g) * 3


def _net(mode: str) -> SCR2Net:
    torch.manual_seed(0)
    net = SCR2Net(D, G, mode=mode, hidden_dim=16, proj_dim=4, dropout=0.0)
    x, y = _batch()
    net.set_statistics(x, y)
    return net


def _step(model, net, rows, config):
    """Loss parts and gradients of one step on ``rows`` of the global batch."""
    x, y = _batch()
    idx = torch.as_tensor(rows)
    out = model(x[idx], y[idx])
    loss, parts = _loss(net, out, y[idx], idx, y, None, config)
    net.zero_grad()
    loss.backward()
    return parts, {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


def _rank(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    loopback = next(name for _, name in socket.if_nameindex() if name.startswith("lo"))
    os.environ["GLOO_SOCKET_IFNAME"] = loopback
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        for name, (config, split) in CASES.items():
            net = _net(config.mode)
            rows = range(split) if rank == 0 else range(split, N)
            parts, grads = _step(DDP(net), net, list(rows), config)
            torch.save({"parts": parts, "grads": grads}, os.path.join(out_dir, f"{name}{rank}.pt"))
        # both ranks are done before either tears gloo down: a rank that destroys its group
        # while the other still talks to it can abort in gloo's threads (SIGABRT)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_give_the_single_process_loss_and_gradients(tmp_path):
    import torch.multiprocessing as mp

    pytest.importorskip("torch.distributed")
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)

    for name, (config, _) in CASES.items():
        net = _net(config.mode)
        single, single_grads = _step(net, net, list(range(N)), config)
        ranks = [torch.load(tmp_path / f"{name}{r}.pt", weights_only=True) for r in (0, 1)]
        for got in ranks:
            for term in ("con", "energy", "temperature"):
                if term in single:
                    assert got["parts"][term] == pytest.approx(single[term], rel=1e-5), (name, term)
            # DDP averaged the gradients: every rank holds the single-process gradient
            assert set(got["grads"]) == set(single_grads)
            for k, g in single_grads.items():
                torch.testing.assert_close(got["grads"][k], g, rtol=1e-4, atol=1e-6, msg=k)
        if name == "even":
            # equal shards: the mean of the ranks' losses (per-rank MSE + global terms) is the loss
            mean_loss = sum(r["parts"]["loss"] for r in ranks) / 2
            assert mean_loss == pytest.approx(single["loss"], rel=1e-5)
            assert "energy" in single and "soft" in single

    # the per-shard terms (what each rank computed before gathering) differ: the test can fail
    x, y = _batch()
    net = _net("full").eval()
    with torch.no_grad():
        out = net(x, y)
    z_img, z_gene, scale, pred = out["z_img"], out["z_gene"], out["logit_scale"], out["pred"]
    whole = (clip_loss(z_img, z_gene, scale), energy_distance(pred, y))
    half = (clip_loss(z_img[:6], z_gene[:6], scale), energy_distance(pred[:6], y[:6]))
    for w, h in zip(whole, half, strict=True):
        assert abs(float(w) - float(h)) > 1e-3 * abs(float(w))
