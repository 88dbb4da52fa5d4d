"""Eq. 3.6 loss: equals the plain terms when fully supervised; masked pixels never matter."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mediar3d.data.mapping import Supervision
from mediar3d.training.losses import flow_loss_terms
from mediar3d.training.supervision import supervision_weights


def _batch(seed=0, b=2, h=16, w=16):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(b, 3, h, w, generator=g)
    target = torch.randn(b, 3, h, w, generator=g) * 5
    target[:, 2] = (torch.rand(b, h, w, generator=g) > 0.5).float()
    return pred, target


def test_full_supervision_is_eq_3_6():
    pred, target = _batch()
    terms = flow_loss_terms(pred, target)
    assert torch.allclose(terms["flow_y"], F.mse_loss(pred[:, 0], target[:, 0]))
    assert torch.allclose(terms["flow_x"], F.mse_loss(pred[:, 1], target[:, 1]))
    assert torch.allclose(terms["cellprob"], F.binary_cross_entropy(torch.sigmoid(pred[:, 2]), target[:, 2]), atol=1e-5)
    assert torch.allclose(terms["loss"], terms["flow_y"] + terms["flow_x"] + terms["cellprob"])


def test_masked_loss_and_gradient_ignore_predictions_outside_the_mask():
    pred, target = _batch(1)
    weight = torch.zeros(2, 1, 16, 16)
    weight[0, 0, 2:9, 3:12] = 1.0
    weight[1, 0, 5:15, 0:4] = 0.5
    p1 = pred.clone().requires_grad_(True)
    l1 = flow_loss_terms(p1, target, weight)["loss"]
    l1.backward()
    changed = pred.clone()
    outside = (weight == 0).expand_as(changed)
    changed[outside] = torch.randn(int(outside.sum())) * 100 + float("1e3")
    changed[0, 0, 0, 0] = float("inf")
    p2 = changed.requires_grad_(True)
    l2 = flow_loss_terms(p2, target, weight)["loss"]
    l2.backward()
    assert torch.equal(l1, l2)
    assert torch.equal(p1.grad, p2.grad)
    assert torch.all(p2.grad[outside] == 0)
    assert p2.grad[~outside].abs().sum() > 0


def test_image_outside_the_dilated_mask_changes_nothing():
    """A pixel-wise network: the image far from labelled cells cannot change loss or weight gradients."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 1), torch.nn.Tanh(), torch.nn.Conv2d(8, 3, 1))
    labels = np.zeros((32, 32), np.int32)
    labels[4:10, 4:10] = 1
    weight = torch.from_numpy(supervision_weights(labels, None, Supervision("dilate", kernel=3, iterations=2)))
    target = torch.zeros(1, 3, 32, 32)
    target[0, 2] = torch.from_numpy((labels > 0).astype(np.float32))
    image = torch.rand(1, 1, 32, 32)
    grads = []
    losses = []
    for trial in range(2):
        img = image.clone()
        if trial:
            img[0, 0, 16:, :] = torch.rand(16, 32) * 10  # far from the labelled cell
        net.zero_grad()
        loss = flow_loss_terms(net(img), target, weight[None, None])["loss"]
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    assert torch.equal(losses[0], losses[1])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_decided_per_sample_not_per_batch():
    """An unlabelled full-supervision sample still teaches background next to a partial sample."""
    pred, target = _batch(2)
    target[0, 2] = 0.0
    target[0, :2] = 0.0
    weight = torch.zeros(2, 1, 16, 16)
    weight[0] = 1.0                  # full mode, no cells: all background
    weight[1, 0, :4, :4] = 1.0       # partial sample: small region
    p = pred.clone().requires_grad_(True)
    flow_loss_terms(p, target, weight)["loss"].backward()
    assert p.grad[0].abs().sum() > 0
    alone = flow_loss_terms(pred[:1], target[:1], weight[:1])["loss"]
    other = flow_loss_terms(pred[1:], target[1:], weight[1:])["loss"]
    both = flow_loss_terms(pred, target, weight)["loss"]
    assert torch.allclose(both, (alone + other) / 2)  # each sample weighs the same whatever its mask size


def test_batch_without_supervision_gives_zero_and_backward_works():
    pred, target = _batch(3)
    p = pred.clone().requires_grad_(True)
    loss = flow_loss_terms(p, target, torch.zeros(2, 1, 16, 16))["loss"]
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.all(p.grad == 0)


@pytest.mark.parametrize("decay", ["none", "linear", "gaussian"])
def test_dilation_weights_decay_with_distance(decay):
    labels = np.zeros((40, 40), np.int32)
    labels[18:22, 18:22] = 3
    w = supervision_weights(labels, None, Supervision("dilate", kernel=3, iterations=4, decay=decay))
    assert np.all(w[labels > 0] == 1)
    assert w[20, 30] == 0 and w[0, 0] == 0        # beyond the dilation
    row = w[20, 21:27]
    assert np.all(np.diff(row) <= 1e-7)           # never grows with distance
    if decay == "none":
        assert np.all(w[20, 22:26] == 1)
    else:
        assert 0 < w[20, 25] < w[20, 23] < 1


def test_roi_and_full_weights():
    labels = np.zeros((10, 10), np.int32)
    valid = np.zeros((10, 10), np.float32)
    valid[2:8, 2:8] = 1
    assert np.all(supervision_weights(labels, valid, Supervision("full")) == 1)
    assert np.array_equal(supervision_weights(labels, valid, Supervision("roi")), valid)
    assert not supervision_weights(labels, valid, Supervision("dilate")).any()


def test_trainer_loss_uses_the_supervision_weights():
    """Trainer._loss_terms passes the weights on: predictions where the weight is 0 change nothing."""
    from mediar3d.training.trainer import Trainer

    torch.manual_seed(0)
    prediction, target = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    target[:, 2] = (target[:, 2] > 0).float()
    weight = torch.zeros(2, 1, 8, 8)
    weight[..., :4] = 1.0
    changed = prediction.clone()
    changed[..., 4:] += 3.0  # only where the weight is 0
    same = Trainer._loss_terms(None, prediction, target, weight)["loss"]
    assert torch.equal(Trainer._loss_terms(None, changed, target, weight)["loss"], same)
    assert not torch.equal(Trainer._loss_terms(None, changed, target, torch.ones_like(weight))["loss"],
                           Trainer._loss_terms(None, prediction, target, torch.ones_like(weight))["loss"])
