"""3D flow loss (Algorithm 2) and modality balancing."""

import numpy as np
import pytest
import torch

from mediar3d.flows import masks_to_flows
from mediar3d.training.balancing import (balancing_weights, bottleneck_features, cluster_embeddings, embed_image)
from mediar3d.training.flow3d import assemble_flows3d, flow3d_loss, flow3d_loss_terms, slice_batch

from training_helpers import blob_image


def _ideal_prediction(flows3d: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """What a perfect 2D network outputs on the slice batch: the in-plane components."""
    dz, dy, dx = flows3d
    n = logit.shape[0]
    z = torch.stack([dy, dx, logit], 1)                        # (z, 3, y, x)
    y = torch.stack([dz, dx, logit], 0).permute(2, 0, 1, 3)    # (y, 3, z, x)
    x = torch.stack([dz, dy, logit], 0).permute(3, 0, 1, 2)    # (x, 3, z, y)
    out = torch.cat([z, y, x])
    assert out.shape == (3 * n, 3, n, n)
    return out


def test_slice_batch_orders_planes_like_take_slice():
    from mediar3d.data.slicing import take_slice

    vol = torch.arange(4 ** 3, dtype=torch.float32).reshape(4, 4, 4)
    batch = slice_batch(vol)
    assert batch.shape == (12, 1, 4, 4)
    for k, orientation in enumerate("zyx"):
        for i in range(4):
            assert torch.equal(batch[4 * k + i, 0], torch.from_numpy(take_slice(vol.numpy(), orientation, i)))


def test_perfect_slice_predictions_assemble_to_the_3d_flows_with_zero_flow_loss():
    _, labels = blob_image((12, 12, 12), 2, 3.5, 0)
    gt = torch.from_numpy(5 * masks_to_flows(labels))
    logit = torch.from_numpy(np.where(labels > 0, 20.0, -20.0).astype(np.float32))
    flows, mean_logit = assemble_flows3d(_ideal_prediction(gt, logit))
    assert torch.allclose(flows, gt) and torch.allclose(mean_logit, logit)
    terms = flow3d_loss_terms(flows, mean_logit, labels)
    assert float(terms["flow_z"]) < 1e-10 and float(terms["cellprob"]) < 1e-6


def test_flow3d_loss_is_masked_and_differentiable():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 3, 1)
    image, labels = blob_image((8, 8, 8), 1, 2.5, 1)
    volume = torch.from_numpy(image / image.max())
    weight = torch.zeros(8, 8, 8)
    weight[:4] = 1
    terms = flow3d_loss(net, volume, labels, weight)
    terms["loss"].backward()
    assert set(terms) == {"flow_z", "flow_y", "flow_x", "cellprob", "loss"}
    assert net.weight.grad.abs().sum() > 0
    changed = volume.clone()
    changed[4:] = torch.rand(4, 8, 8) * 5           # outside the mask; a pixel-wise net cannot carry it inside
    assert torch.equal(flow3d_loss(net, changed, labels, weight)["loss"].detach(), terms["loss"].detach())


def test_kmeans_finds_planted_clusters_and_weights_favour_small_ones():
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, 0.1, (30, 4)), rng.normal(5, 0.1, (6, 4))])
    clusters = cluster_embeddings(emb, k=2, seed=0)
    assert len(set(clusters[:30])) == 1 and len(set(clusters[30:])) == 1 and clusters[0] != clusters[-1]
    w = balancing_weights(clusters, power=1.0)
    assert np.isclose(w[:30].sum(), w[30:].sum())
    assert np.isclose(w.mean(), 1.0)
    assert np.allclose(balancing_weights(clusters, power=0.0), 1.0)
    assert len(cluster_embeddings(emb, k=40, seed=0)) == 36      # k capped at the number of images


def test_embedding_uses_the_bottleneck_of_the_encoder():
    from mediar3d.models import create_model

    net = create_model("unet-small", channels=[4, 8, 16]).eval()
    feats = bottleneck_features(net, torch.rand(1, 1, 64, 64))
    assert feats.shape == (1, 16, 8, 8)                           # stride 2 stem, then /2 twice
    a = embed_image(net, np.zeros((64, 64), np.float32))
    b = embed_image(net, np.ones((64, 64), np.float32))
    assert a.shape == (16,) and not np.allclose(a, b)
    with pytest.raises(Exception, match="encoder"):
        bottleneck_features(torch.nn.Conv2d(1, 3, 1), torch.rand(1, 1, 8, 8))
