"""Loss terms against values computed by hand / with plain-Python loops on tiny tensors."""
import math

import pytest
import torch

from kdcascade.errors import ConfigError
from kdcascade.losses import (
    LOSSES, Projection, attention_kl, attention_mse, get_loss, hidden_cosine, hidden_mse,
    hidden_nmse, logits_kl, masked_mean, minilm_relation,
)

B, T, H, HEADS = 2, 3, 2, 2
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])
MASKED_LOSSES = ["hidden_mse", "hidden_nmse", "hidden_cosine", "attention_kl", "attention_mse", "minilm_relation"]


# ---------- plain-Python references ----------
def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def _softmax(xs):
    mx = max(xs)
    e = [math.exp(x - mx) for x in xs]
    return [v / sum(e) for v in e]


def ref_attention_kl(s, t, mask):
    s, t, mask = s.tolist(), t.tolist(), mask.tolist()
    total, n = 0.0, 0
    for b in range(len(s)):
        keys = [k for k, v in enumerate(mask[b]) if v]
        for h in range(len(s[b])):
            for q in keys:
                total += _kl([t[b][h][q][k] for k in keys], [s[b][h][q][k] for k in keys])
                n += 1
    return total / n


def ref_attention_mse(s, t, mask):
    s, t, mask = s.tolist(), t.tolist(), mask.tolist()
    total, n = 0.0, 0
    for b in range(len(s)):
        keys = [k for k, v in enumerate(mask[b]) if v]
        for h in range(len(s[b])):
            for q in keys:
                for k in keys:
                    total += (s[b][h][q][k] - t[b][h][q][k]) ** 2
                    n += 1
    return total / n


def ref_minilm(s, t, mask, n_heads):
    def rel(x, b, h, q, keys):
        d = len(x[b][0]) // n_heads
        vec = lambda i: x[b][i][h * d:(h + 1) * d]  # noqa: E731
        return _softmax([sum(a * c for a, c in zip(vec(q), vec(k))) / math.sqrt(d) for k in keys])

    s, t, mask = s.tolist(), t.tolist(), mask.tolist()
    total, n = 0.0, 0
    for b in range(len(s)):
        keys = [k for k, v in enumerate(mask[b]) if v]
        for h in range(n_heads):
            for q in keys:
                total += _kl(rel(t, b, h, q, keys), rel(s, b, h, q, keys))
                n += 1
    return total / n


# ---------- random inputs per loss ----------
def make(name, mask=MASK, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    b, t = mask.shape
    if name in ("hidden_mse", "hidden_nmse", "hidden_cosine"):
        s, te, kw = torch.randn(b, t, H, generator=g), torch.randn(b, t, H, generator=g), {}
    elif name in ("attention_kl", "attention_mse"):
        s, te = torch.randn(b, HEADS, t, t, generator=g), torch.randn(b, HEADS, t, t, generator=g)
        if name == "attention_kl":
            key_bias = torch.where(mask[:, None, None, :] != 0, 0.0, -1e9)
            s, te = (s + key_bias).softmax(-1), (te + key_bias).softmax(-1)
        kw = {}
    elif name == "minilm_relation":  # widths differ: student 4 = 2x2, teacher 6 = 2x3
        s, te, kw = torch.randn(b, t, 4, generator=g), torch.randn(b, t, 6, generator=g), {"num_relation_heads": 2}
    else:
        raise KeyError(name)
    return s.to(dtype), te.to(dtype), kw


def call(name, s, t, mask, **kw):
    return get_loss(name)(s, t, mask, **kw)


def padded_positions(name, mask):
    """Boolean index of the entries that padding should hide."""
    m = mask != 0
    if name in ("attention_kl", "attention_mse"):
        return ~(m[:, None, :, None] & m[:, None, None, :]).expand(-1, HEADS, -1, -1)
    return ~m


# ---------- hand-computed values ----------
def test_hidden_mse_by_hand():
    s = torch.tensor([[[1., 2.], [3., 4.], [99., 99.]], [[.5, 0.], [7., 7.], [7., 7.]]])
    t = torch.tensor([[[0., 2.], [1., 1.], [-5., 7.]], [[0., 1.], [0., 0.], [0., 0.]]])
    # real tokens: (1,0)^2 + (2,3)^2 + (.5,-1)^2 = 1 + 13 + 1.25; 3 tokens * H=2
    assert hidden_mse(s, t, MASK).item() == pytest.approx(15.25 / 6)


def test_hidden_nmse_by_hand():
    s = torch.tensor([[[1., 2.], [3., 4.], [99., 99.]], [[.5, 0.], [7., 7.], [7., 7.]]])
    t = torch.tensor([[[0., 2.], [1., 1.], [-5., 7.]], [[0., 1.], [0., 0.], [0., 0.]]])
    # real tokens: |(1,0)|^2/|(0,2)|^2 = 1/4, |(2,3)|^2/|(1,1)|^2 = 13/2, |(.5,-1)|^2/|(0,1)|^2 = 1.25
    assert hidden_nmse(s, t, MASK).item() == pytest.approx((0.25 + 6.5 + 1.25) / 3)
    # scale-free: the same relative error at any scale gives the same value
    assert hidden_nmse(10 * s, 10 * t, MASK).item() == pytest.approx(hidden_nmse(s, t, MASK).item())


def test_hidden_cosine_by_hand():
    s = torch.tensor([[[1., 0.], [1., 1.], [5., 5.]], [[3., 4.], [1., 2.], [0., 0.]]])
    t = torch.tensor([[[0., 1.], [2., 2.], [-5., 5.]], [[4., 3.], [0., 0.], [9., 9.]]])
    # cos: 0, 1, 24/25 -> (1 + 0 + 1/25) / 3
    assert hidden_cosine(s, t, MASK).item() == pytest.approx((1 + 0 + 0.04) / 3)


def test_attention_kl_by_hand():
    t = torch.tensor([[[[.5, .5], [1., 0.]]]])
    s = torch.tensor([[[[.25, .75], [.5, .5]]]])
    expected = (0.5 * math.log(.5 / .25) + 0.5 * math.log(.5 / .75) + math.log(2)) / 2
    assert attention_kl(s, t, torch.ones(1, 2)).item() == pytest.approx(expected)
    s, t, _ = make("attention_kl")
    assert attention_kl(s, t, MASK).item() == pytest.approx(ref_attention_kl(s, t, MASK), rel=1e-5)


def test_attention_kl_averages_over_heads_not_batch():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])  # B=3 != heads=2
    s, t, _ = make("attention_kl", mask=mask, seed=3)
    assert attention_kl(s, t, mask).item() == pytest.approx(ref_attention_kl(s, t, mask), rel=1e-5)


def test_attention_mse_by_hand():
    s = torch.tensor([[[[2., 5.], [6., 7.]], [[0., 5.], [6., 7.]]]])
    t = torch.tensor([[[[1., -5.], [-6., -7.]], [[3., -5.], [-6., -7.]]]])
    # only (q=0, k=0) is real: head0 (2-1)^2 = 1, head1 (0-3)^2 = 9
    assert attention_mse(s, t, torch.tensor([[1, 0]])).item() == pytest.approx(5.0)
    s, t, _ = make("attention_mse")
    assert attention_mse(s, t, MASK).item() == pytest.approx(ref_attention_mse(s, t, MASK), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_mse_finfo_min_at_masked_keys_is_finite(dtype):
    s, t, _ = make("attention_mse", dtype=dtype)
    keys_pad = (MASK == 0)[:, None, None, :].expand_as(s)
    s = s.masked_fill(keys_pad, torch.finfo(dtype).min).requires_grad_()
    t = t.masked_fill(keys_pad, -1e4)  # a different mask value on the teacher side
    loss = attention_mse(s, t, MASK)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert loss.item() == pytest.approx(ref_attention_mse(s.detach().float(), t.float(), MASK), rel=1e-5)


def test_logits_kl_by_hand_with_and_without_t2():
    s = torch.tensor([[0., 0.], [1., 2.]])
    t = torch.tensor([[math.log(3), 0.], [1., 2.]])
    at_t1 = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2  # row 2 identical -> 0; batchmean
    assert logits_kl(s, t, 1.0).item() == pytest.approx(at_t1)
    pt = [math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)]  # softmax([ln3/2, 0])
    at_t2 = sum(p * math.log(2 * p) for p in pt) / 2
    assert logits_kl(s, t, 2.0, scale_by_t2=False).item() == pytest.approx(at_t2)
    assert logits_kl(s, t, 2.0).item() == pytest.approx(4 * at_t2)
    with pytest.raises(ValueError):
        logits_kl(s, t, 0.0)


def test_minilm_relation_by_hand():
    s, t = torch.tensor([[[0.], [0.]]]), torch.tensor([[[1.], [0.]]])
    # teacher row 0: softmax([1, 0]); row 1: uniform; student: uniform everywhere
    p = [math.e / (math.e + 1), 1 / (math.e + 1)]
    expected = (sum(pi * math.log(2 * pi) for pi in p) + 0) / 2
    assert minilm_relation(s, t, torch.ones(1, 2), 1).item() == pytest.approx(expected, rel=1e-5)
    s, t, kw = make("minilm_relation")
    assert minilm_relation(s, t, MASK, **kw).item() == pytest.approx(ref_minilm(s, t, MASK, 2), rel=1e-5)
    with pytest.raises(ValueError):
        minilm_relation(s, t, MASK, num_relation_heads=4)  # 6 % 4 != 0


# ---------- properties shared by the masked losses ----------
@pytest.mark.parametrize("name", MASKED_LOSSES)
def test_padding_values_do_not_change_loss(name):
    s, t, kw = make(name)
    base = call(name, s, t, MASK, **kw)
    pad = padded_positions(name, MASK)
    s2, t2 = s.clone(), t.clone()
    s2[pad], t2[pad] = float("nan"), float("inf")
    s2.requires_grad_()
    loss = call(name, s2, t2, MASK, **kw)
    loss.backward()
    assert loss.item() == pytest.approx(base.item(), rel=1e-6)
    assert torch.isfinite(s2.grad).all() and (s2.grad[pad] == 0).all()


@pytest.mark.parametrize("name", MASKED_LOSSES)
def test_all_padding_rows(name):
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    s, t, kw = make(name, mask=mask, seed=1)
    loss = call(name, s, t, mask, **kw)
    alone = call(name, s[:1], t[:1], mask[:1], **kw)  # the only non-padding row on its own
    assert torch.isfinite(loss) and loss.item() == pytest.approx(alone.item(), rel=1e-6)
    empty = call(name, s, t, torch.zeros_like(mask), **kw)
    assert torch.isfinite(empty) and empty.item() == 0.0


@pytest.mark.parametrize("name", MASKED_LOSSES)
def test_zero_when_student_equals_teacher(name):
    s, _, kw = make(name)
    if name == "minilm_relation":  # different widths by design; same relations need same input
        kw = {"num_relation_heads": 2}
    assert call(name, s, s.clone(), MASK, **kw).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", MASKED_LOSSES + ["logits_kl"])
def test_gradients_reach_student_only(name):
    if name == "logits_kl":
        s, t, args = torch.randn(2, 5), torch.randn(2, 5), (2.0,)
    else:
        s, t, kw = make(name)
        args = (MASK, *kw.values())
    s.requires_grad_(), t.requires_grad_()
    loss = get_loss(name)(s, t, *args)
    loss.backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MASKED_LOSSES)
def test_bf16_inputs_computed_in_fp32(name):
    s, t, kw = make(name, dtype=torch.bfloat16)
    loss = call(name, s, t, MASK, **kw)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(call(name, s.float(), t.float(), MASK, **kw).item(), rel=1e-6)
    assert logits_kl(torch.randn(2, 3).bfloat16(), torch.randn(2, 3).bfloat16(), 2.0).dtype == torch.float32


# ---------- registry, helpers ----------
def test_registry():
    assert set(LOSSES) == {"hidden_mse", "hidden_nmse", "hidden_cosine", "attention_kl",
                           "attention_mse", "logits_kl", "minilm_relation"}
    assert {loss.feature for loss in LOSSES.values()} == {
        "hidden", "attention", "attention_scores", "logits", "qkv"}
    assert {loss.unit for loss in LOSSES.values()} == {"example", "token", "token_pair"}
    assert get_loss("hidden_mse").fn is hidden_mse and get_loss("hidden_nmse").name == "hidden_nmse"


def test_unknown_loss_raises_config_error():
    with pytest.raises(ConfigError, match=r"distill\.objectives: unknown loss 'x'; expected one of .*hidden_mse"):
        get_loss("x")


def test_masked_mean_and_projection():
    v = torch.tensor([1., 2., float("inf")])
    assert masked_mean(v, torch.tensor([1, 1, 0])).item() == 1.5
    assert masked_mean(v, torch.zeros(3)).item() == 0.0
    proj = Projection(2, 4)
    s = torch.randn(B, T, 2, dtype=torch.bfloat16)
    out = proj(s)
    assert out.shape == (B, T, 4)
    hidden_mse(out, torch.randn(B, T, 4), MASK).backward()
    assert proj.linear.weight.grad is not None
