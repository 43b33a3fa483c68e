"""The TVTS model: token counts under tube masking, sort-head equivariance, losses, decoding."""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from tvts.config import ConfigError, from_dict
from tvts.models.sort_head import SortConfig, SortHead
from tvts.models.text import TextConfig, build_spec, load_tokenizer, tokenize
from tvts.models.tvts import TVTS, ModelConfig, contrastive_loss, decode_permutation, sort_accuracy
from tvts.models.video_vit import VideoConfig, VideoViT, all_patches, tube_keep_indices

TINY_VIDEO = VideoConfig(img_size=32, patch_size=8, tubelet=2, num_frames=8, dim=32, depth=1, heads=2)
TEXTS = ["the red circle moves left", "a blue square appears", "the green bar shrinks", "um so the purple ring"]


def tiny_model(pool: str = "cls") -> TVTS:
    cfg = ModelConfig(video=TINY_VIDEO, text=TextConfig(model="scratch", max_length=12, vocab_size=300, dim=32,
                                                        depth=1, heads=2, hidden_dim=64, pool=pool,
                                                        dropout=0.0),
                      sort=SortConfig(depth=1, heads=2), embed_dim=16)
    torch.manual_seed(0)
    return TVTS(cfg, build_spec(cfg.text, TEXTS * 5)).eval()


def keep_batch(b: int, cfg: VideoConfig, ratio: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.stack([torch.from_numpy(tube_keep_indices(rng, cfg.tubes, cfg.patches, ratio)) for _ in range(b)])


def test_encoder_sees_cls_plus_kept_patches_of_every_tube():
    vit = VideoViT(TINY_VIDEO).eval()
    x = torch.randn(3, 3, 8, 32, 32)
    keep = keep_batch(3, TINY_VIDEO, 0.75)
    assert keep.shape == (3, 4, 4)  # 4 tubes x (16 patches * 0.25)
    assert vit.forward_features(x, keep).shape == (3, 1 + 4 * 4, 32)
    assert vit.forward_features(x, None).shape == (3, 1 + 4 * 16, 32)
    full = torch.from_numpy(all_patches(4, 16)).expand(3, -1, -1)
    assert torch.allclose(vit.forward_features(x, full), vit.forward_features(x, None), atol=1e-6)


@pytest.mark.parametrize("std", [0.5, 1.0, 8.0])
def test_temporal_embedding_init_scales_with_its_std(std):
    """Truncated at ±2 std, not at timm's absolute ±2: std 8 must not be clipped to ~1.2."""
    torch.manual_seed(0)
    vit = VideoViT(replace(TINY_VIDEO, dim=256, temporal_init_std=std))
    emb = vit.temporal_embed.detach()
    assert emb.abs().max() <= 2 * std + 1e-6
    assert 0.8 * std < emb.std().item() < 0.95 * std     # a normal cut at ±2σ has std 0.88σ


@pytest.mark.parametrize("std", [0.3, 1.0, 8.0])
def test_position_embedding_init_scales_with_its_std(std):
    torch.manual_seed(0)
    emb = VideoViT(replace(TINY_VIDEO, dim=256, img_size=64, pos_init_std=std)).pos_embed.detach()
    assert emb.abs().max() <= 2 * std + 1e-6 and 0.8 * std < emb.std().item() < 0.95 * std


def test_default_position_embedding_is_timms_and_a_bad_std_names_its_key():
    """The paper's config keeps timm's draw: std 0.02, cut at an absolute ±2 (so not cut at all)."""
    torch.manual_seed(0)
    default = VideoViT(replace(TINY_VIDEO, dim=256, img_size=64)).pos_embed.detach()
    assert 0.019 < default.std().item() < 0.021
    with pytest.raises(ConfigError, match=r"video\.pos_init_std"):
        from_dict(VideoConfig, {"pos_init_std": 0.0}, "pretrain.model.video")


def test_tube_masks_differ_per_tube_and_per_sample():
    keep = keep_batch(8, VideoConfig(), 0.75)               # paper size: 8 tubes x 196 patches
    assert keep.shape == (8, 8, 49)
    for sample in keep:
        assert len({tuple(t.tolist()) for t in sample}) == 8  # each tube its own subset
        assert all(len(set(t.tolist())) == 49 for t in sample)  # no repeats within a tube
    assert len({tuple(s.flatten().tolist()) for s in keep}) == 8


def test_masked_tokens_are_the_kept_patches():
    """Gathering happens on the right axis: a kept token equals the unmasked token of that patch."""
    vit = VideoViT(TINY_VIDEO).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    keep = keep_batch(2, TINY_VIDEO, 0.5)
    emb = vit.embed(x, keep)[:, 1:].view(2, 4, -1, 32)
    full = vit.embed(x, None)[:, 1:].view(2, 4, 16, 32)
    for b, t in itertools.product(range(2), range(4)):
        assert torch.allclose(emb[b, t], full[b, t, keep[b, t]])


def test_sort_head_is_permutation_equivariant():
    torch.manual_seed(0)
    head = SortHead(32, 24, 4, SortConfig(depth=2, heads=2)).eval()
    video, text = torch.randn(2, 17, 32), torch.randn(2, 4, 24)
    out = head(video, text)
    for perm in itertools.permutations(range(4)):
        p = torch.tensor(perm)
        assert torch.allclose(head(video, text[:, p]), out[:, p], atol=1e-5)
    assert not torch.allclose(out[:, 0], out[:, 1])  # it is not trivially constant


def test_model_forward_shapes_and_text_only_variant():
    model = tiny_model()
    tok = load_tokenizer(build_spec(model.cfg.text, TEXTS * 5), 12)
    ids, mask = tokenize(tok, TEXTS * 2)
    x = torch.randn(2, 3, 8, 32, 32)
    out = model(x, keep_batch(2, TINY_VIDEO, 0.75), ids.view(2, 4, 12), mask.view(2, 4, 12))
    assert out.sort_logits.shape == (2, 4, 4) and out.video_emb.shape == (2, 16) == out.text_emb.shape
    assert torch.allclose(out.video_emb.norm(dim=-1), torch.ones(2))
    model.loss_cfg = type(model.loss_cfg)(sort_video=False)
    blind = model(torch.zeros_like(x), None, ids.view(2, 4, 12), mask.view(2, 4, 12))
    again = model(x, None, ids.view(2, 4, 12), mask.view(2, 4, 12))
    assert torch.equal(blind.sort_logits, again.sort_logits)  # the text-only head never sees the video


def test_mean_pooling_ignores_padding():
    model = tiny_model(pool="mean")
    tok = load_tokenizer(build_spec(model.cfg.text, TEXTS * 5), 12)
    ids, mask = tokenize(tok, ["the red circle"])
    short = model.text(ids, mask)
    longer_tok = load_tokenizer(build_spec(model.cfg.text, TEXTS * 5), 20)
    ids2, mask2 = tokenize(longer_tok, ["the red circle"])
    # more padding, same text: DistilBERT masks the pads, mean pooling skips them
    assert torch.allclose(short, model.text(ids2, mask2), atol=1e-5)


def test_decode_permutation_is_the_best_assignment():
    torch.manual_seed(1)
    logits = torch.randn(50, 4, 4)
    decoded = decode_permutation(logits)
    logp = logits.log_softmax(-1)
    for b in range(50):
        best = max(itertools.permutations(range(4)), key=lambda p: sum(logp[b, i, p[i]].item() for i in range(4)))
        assert decoded[b].tolist() == list(best)
        assert sorted(decoded[b].tolist()) == [0, 1, 2, 3]


def test_sort_accuracy_exact_vs_per_position():
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, torch.arange(4), order[0]] = 5.0        # first sample right
    logits[1, torch.arange(4), torch.tensor([3, 2, 0, 1])] = 5.0  # second: two of four right
    acc = sort_accuracy(logits, order)
    assert acc["sort_acc"] == pytest.approx(6 / 8) and acc["sort_exact"] == pytest.approx(0.5)
    assert acc["sort_exact_argmax"] == pytest.approx(0.5)


def test_official_exact_order_needs_every_argmax_while_decoding_repairs_a_collision():
    """Two transcripts whose argmax is the same position: the official metric (every position's
    argmax right) scores it wrong; the decoded permutation can still recover the true order."""
    order = torch.tensor([[0, 1, 2, 3]])
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, torch.arange(4), order[0]] = 5.0
    logits[0, 1, 0] = 5.5                               # transcript 1 prefers position 0 (taken by 0)
    acc = sort_accuracy(logits, order)
    assert acc["sort_exact_argmax"] == 0.0 and acc["sort_exact"] == 1.0 and acc["sort_acc"] == 0.75
    torch.manual_seed(2)
    many, truth = torch.randn(200, 4, 4), torch.stack([torch.randperm(4) for _ in range(200)])
    acc = sort_accuracy(many, truth)
    assert acc["sort_exact_argmax"] <= acc["sort_exact"]


def test_contrastive_loss_hand_computed():
    v = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    t = v.clone()
    loss = contrastive_loss(v, t, v, t, 0, temperature=0.5)
    expected = -torch.log(torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 1))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # the local-rows form equals the full-batch form when ranks' rows are stacked
    half = contrastive_loss(v[1:], t[1:], v, t, 1, 0.5)
    assert ((contrastive_loss(v[:1], t[:1], v, t, 0, 0.5) + half) / 2).item() == pytest.approx(loss.item(), rel=1e-6)
    # the official loss sums the two directions: twice the mean, not the same number
    total = contrastive_loss(v, t, v, t, 0, 0.5, reduction="sum")
    assert total.item() == pytest.approx(2 * loss.item(), rel=1e-6) and total.item() != pytest.approx(loss.item())


def test_official_loss_settings_are_the_defaults_and_checked():
    from tvts.config import ConfigError, from_dict
    from tvts.models.tvts import LossConfig
    from tvts.train.config import PretrainConfig

    assert (LossConfig().align_reduction, LossConfig().gather_grad) == ("sum", "local")
    assert PretrainConfig().data.epoch == "video"
    for key, bad in (("align_reduction", "avg"), ("gather_grad", "none")):
        with pytest.raises(ConfigError, match=f"pretrain.loss.{key}: must be one of"):
            from_dict(PretrainConfig, {"loss": {key: bad}}, "pretrain")
    with pytest.raises(ConfigError, match="pretrain.data.epoch: must be one of"):
        from_dict(PretrainConfig, {"data": {"epoch": "clip"}}, "pretrain")


def test_scratch_tokenizer_is_the_same_in_every_process():
    """Token ids must not depend on the process (the `tokenizers` trainer's do): same config, same run."""
    import subprocess
    import sys

    code = ("from tvts.models.text import TextConfig, build_spec; import hashlib; "
            f"print(hashlib.md5(build_spec(TextConfig(model='scratch'), {TEXTS * 3!r}).tokenizer_json.encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
               for _ in range(3)}
    assert len(digests) == 1
    tok = load_tokenizer(build_spec(TextConfig(model="scratch"), TEXTS), 10)
    assert tok.encode("The RED circle").tokens[:4] == ["[CLS]", "the", "red", "circle"]


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    vit = VideoViT(TINY_VIDEO).train()
    x = torch.randn(2, 3, 8, 32, 32)
    keep = keep_batch(2, TINY_VIDEO, 0.75)
    grads = []
    for flag in (False, True):
        vit.zero_grad()
        vit.grad_checkpointing = flag
        vit.forward_features(x, keep).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in vit.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-7)
