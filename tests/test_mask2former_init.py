"""Mask2Former COCO-instance initialisation: key mapping tested on a randomly initialised
``Mask2FormerForUniversalSegmentation`` saved to disk and reloaded (no network)."""
import pytest
import torch

from ausm.config import get_config
from ausm.errors import CheckpointError
from ausm.model import AUSMModel
from ausm.model.encoder import mask2former_config
from ausm.model.mask2former_init import init_from_mask2former

SMALL_SWIN = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=4, image_size=64)


def _cfg(**kw):
    base = dict(backbone_kwargs=SMALL_SWIN, hidden_dim=32, mask_dim=32, num_queries=6,
                num_ids=4, compressor_layers=1, history_decoder_layers=1, pixel_decoder_layers=3,
                pixel_decoder_heads=4, pixel_decoder_ffn=64, compressor_heads=4, history_decoder_heads=4,
                compressor_ffn=64, history_decoder_ffn=64,
                mask2former_kwargs=dict(encoder_layers=1, encoder_feedforward_dim=64))
    return get_config("ausm-swin-t", **{**base, **kw})


@pytest.fixture(scope="module")
def m2f_dir(tmp_path_factory):
    from transformers import Mask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    hf_cfg = mask2former_config(_cfg())
    hf_cfg.num_labels = 80
    model = Mask2FormerForUniversalSegmentation(hf_cfg).eval()
    d = tmp_path_factory.mktemp("m2f")
    model.save_pretrained(d)
    return d, model


def test_every_mapped_tensor_is_copied(m2f_dir):
    d, hf = m2f_dir
    torch.manual_seed(1)
    model = AUSMModel(_cfg()).eval()
    report = init_from_mask2former(model, str(d))
    own = model.state_dict()
    src = hf.state_dict()
    assert not report["skipped"]
    # the whole pixel-level module
    plm = [k for k in src if k.startswith("model.pixel_level_module.")]
    assert plm and all(torch.equal(own["encoder." + k[len("model."):]], src[k]) for k in plm)
    tm = "model.transformer_module.decoder."
    torch.testing.assert_close(own["pixel_decoder.query_feat.weight"], src["model.transformer_module.queries_features.weight"])
    torch.testing.assert_close(own["pixel_decoder.query_pos.weight"], src["model.transformer_module.queries_embedder.weight"])
    torch.testing.assert_close(own["class_heads.coco.weight"], src["class_predictor.weight"])
    q, k, v = src[tm + "layers.2.cross_attn.in_proj_weight"].chunk(3)
    torch.testing.assert_close(own["pixel_decoder.layers.2.cross_attn.k_proj.weight"], k)
    torch.testing.assert_close(own["pixel_decoder.layers.2.ffn.fc2.bias"], src[tm + "layers.2.fc2.bias"])
    torch.testing.assert_close(own["pixel_decoder.mask_embed.layers.1.weight"], src[tm + "mask_predictor.mask_embedder.1.0.weight"])
    # AUSM-only modules keep their own init
    assert any(n.startswith("compressor.") for n in report["not_initialised"])
    assert "id_vectors" in report["not_initialised"]


def test_encoder_and_decoder_layers_compute_what_mask2former_computes(m2f_dir):
    d, hf = m2f_dir
    model = AUSMModel(_cfg()).eval()
    init_from_mask2former(model, str(d))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        X, P = model.encoder(x)
        ref = hf.model.pixel_level_module(x)
        torch.testing.assert_close(X, ref.decoder_hidden_states[-1])
        torch.testing.assert_close(P, ref.decoder_last_hidden_state)
        # one masked-attention decoder layer on the same inputs (HF is sequence-first)
        Q, L, D = 6, 48, 32
        q, qpos = torch.randn(1, Q, D), torch.randn(1, Q, D)
        mem, mpos = torch.randn(1, L, D), torch.randn(1, L, D)
        allow = torch.rand(1, Q, L) > 0.3
        allow[:, :, 0] = True
        ours = model.pixel_decoder.layers[1](q, qpos, mem, mpos, allow.unsqueeze(1), None)
        theirs = hf.model.transformer_module.decoder.layers[1](
            q.transpose(0, 1), level_index=0, position_embeddings=[mpos.transpose(0, 1)],
            query_position_embeddings=qpos.transpose(0, 1), encoder_hidden_states=[mem.transpose(0, 1)],
            encoder_attention_mask=(~allow).repeat_interleave(4, dim=0))[0].transpose(0, 1)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_errors(m2f_dir, tmp_path):
    d, _ = m2f_dir
    tiny = AUSMModel(get_config("ausm-tiny"))
    with pytest.raises(CheckpointError, match="encoder='mask2former'"):
        init_from_mask2former(tiny, str(d))
    with pytest.raises(CheckpointError, match="cannot load"):
        init_from_mask2former(AUSMModel(_cfg()), str(tmp_path / "missing"))
    wider = AUSMModel(_cfg(pixel_decoder_ffn=128))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        init_from_mask2former(wider, str(d))
