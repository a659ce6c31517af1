import torch

from model import CONFIGS, GritConfig, GRITv2, box_cell_weights, build_model, count_params


def _inputs(b, n, s, persons):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(b, 3, s, s, generator=g)
    xy = torch.rand(b, n, 2, generator=g) * 0.5
    wh = torch.rand(b, n, 2, generator=g) * 0.4 + 0.1
    boxes = torch.cat([xy, xy + wh], dim=-1)
    mask = torch.zeros(b, n)
    mask[:, :persons] = 1
    return img, boxes * mask[..., None], mask


def test_tiny_builds_and_is_symmetric(tiny_model):
    cfg = tiny_model.cfg
    img, boxes, mask = _inputs(2, cfg.num_persons, cfg.img_size, 5)
    with torch.no_grad():
        out = tiny_model(img, boxes, mask)
    assert out.shape == (2, cfg.num_persons, cfg.num_persons, cfg.num_classes)
    assert torch.isfinite(out).all()
    assert torch.equal(out, out.transpose(1, 2))


def test_no_nan_without_persons(tiny_model):
    cfg = tiny_model.cfg
    img, boxes, mask = _inputs(1, cfg.num_persons, cfg.img_size, 0)
    with torch.no_grad():
        assert torch.isfinite(tiny_model(img, boxes, mask)).all()


def test_full_model_shape_params_and_independent_layers():
    m = build_model("gritv2-s").eval()
    assert m.feat_c == 448 and (m.feat_h, m.feat_w) == (7, 7)
    n = count_params(m)
    assert 19_000_000 < n < 22_000_000, n
    # every encoder/decoder layer has its own weights
    w = [l.ffn.fc1.weight for l in m.encoder] + [l.ffn.fc1.weight for l in m.decoder]
    for i in range(len(w)):
        for j in range(i + 1, len(w)):
            assert not torch.equal(w[i], w[j])
    assert not torch.equal(m.gqm[0].w_n.weight, m.gqm[1].w_n.weight)
    img, boxes, mask = _inputs(1, 8, 224, 4)
    with torch.no_grad():
        out = m(img, boxes, mask)
    assert out.shape == (1, 8, 8, 6)
    assert torch.equal(out, out.transpose(1, 2))


def test_seeded_init_is_reproducible():
    a = GRITv2(CONFIGS["test-tiny"]).state_dict()
    b = GRITv2(CONFIGS["test-tiny"]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = GritConfig.from_dict({**CONFIGS["test-tiny"].to_dict(), "seed": 1})
    c = GRITv2(cfg).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_box_cell_weights():
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5], [0.3, 0.3, 0.31, 0.31], [0, 0, 0, 0]]])
    w = box_cell_weights(boxes, 7, 7)
    assert w.shape == (1, 4, 49)
    torch.testing.assert_close(w[0, :3].sum(-1), torch.ones(3), atol=1e-4, rtol=0)
    assert w[0, 3].abs().sum() == 0
    torch.testing.assert_close(w[0, 0], torch.full((49,), 1 / 49), atol=1e-5, rtol=0)
    # the half box covers the top-left 3.5 x 3.5 cells only
    grid = w[0, 1].reshape(7, 7)
    assert grid[4:, :].sum() == 0 and grid[:, 4:].sum() == 0
    assert grid[0, 0] > grid[3, 3] > 0
