import math

import numpy as np
import pytest
import torch

from data import class_weights
from evaluate import average_precision, pair_metrics
from train import kd_loss, relation_loss


def test_average_precision_known_values():
    # ranking: P N P N -> precisions at positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.9, 0.8], [1, 1]) == pytest.approx(1.0)
    assert math.isnan(average_precision([0.9, 0.8], [0, 0]))
    # ties are grouped: both tied at rank 1-2 with one positive -> precision 1/2
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)


def test_pair_metrics_counts_each_pair_once():
    n, k = 3, 3
    labels = -np.ones((1, n, n), dtype=np.int64)
    labels[0, 0, 1] = labels[0, 1, 0] = 2
    labels[0, 0, 2] = labels[0, 2, 0] = 0
    logits = np.zeros((1, n, n, k), dtype=np.float32)
    logits[0, 0, 1, 2] = logits[0, 1, 0, 2] = 5
    logits[0, 0, 2, 1] = logits[0, 2, 0, 1] = 5  # wrong
    m = pair_metrics(logits, labels, k)
    assert m["pairs"] == 2
    assert m["accuracy"] == pytest.approx(0.5)
    assert not math.isnan(m["mAP"])


def test_class_weights_inverse_frequency():
    w = class_weights([0, 0, 0, 1], 3)
    assert w.shape == (3,)
    assert w[1] > w[0]
    assert float(w.mean()) == pytest.approx(1.0)


def test_losses():
    logits = torch.zeros(1, 3, 3, 6, requires_grad=True)
    labels = -torch.ones(1, 3, 3, dtype=torch.long)
    labels[0, 0, 1] = labels[0, 1, 0] = 4
    loss = relation_loss(logits, labels, torch.ones(6))
    assert loss.item() == pytest.approx(6 * math.log(2), rel=1e-5)
    loss.backward()
    assert logits.grad[0, 0, 1, 4] < 0 and logits.grad[0, 2, 2].abs().sum() == 0
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert kd_loss(logits, logits.detach(), labels, mask, 2.0).item() == pytest.approx(0.0, abs=1e-6)
