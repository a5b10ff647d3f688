"""GPT-2 and Llama ports against `transformers` models built from small configs with random weights
(nothing is downloaded): compare module by module, checkpoints as Hugging Face writes them (single
and sharded safetensors), greedy generation token for token, and engines with dynamic profiles."""
from __future__ import annotations

import pytest
import torch

import netdef
from netdef import functional as F
from netdef.generation import step_network
from netdef.models import gpt2, llama
from test_runtime import gpu as needs_gpu

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VOCAB = 97


def _randomized(model, scale=0.3):
    """Random weights large enough that greedy tokens depend on every layer; norms near 1."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if ("ln" in name or "norm" in name) and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=g) * (scale if p.ndim > 1 else 0.1) + base)
    return model.eval()


def gpt2_config(**kw):
    return transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                   bos_token_id=0, eos_token_id=None, pad_token_id=0, **kw)


def llama_config(**kw):
    kw.setdefault("rope_parameters", {"rope_type": "default", "rope_theta": 500.0})
    return transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                    bos_token_id=0, eos_token_id=None, pad_token_id=0, **kw)


PAIRS = {
    "gpt2": (gpt2_config, transformers.GPT2LMHeadModel, gpt2.GPT2LMHeadModel),
    "llama": (llama_config, transformers.LlamaForCausalLM, llama.LlamaForCausalLM),
}


def pair(name, **config):
    make_config, hf_cls, port_cls = PAIRS[name]
    cfg = make_config(**config)
    hf = _randomized(hf_cls(cfg))
    port = port_cls(cfg.to_dict())  # the config's dict works as well as the object
    port.load_state_dict({k: v.numpy() for k, v in hf.state_dict().items()})
    return hf, port


@pytest.fixture(scope="module")
def ids():
    return torch.randint(1, VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))


BLOCK_ROWS = {
    "gpt2": ["transformer.h.1.ln_1", "transformer.h.1.attn.c_attn", "transformer.h.1.attn", "transformer.h.1.mlp.act",
             "transformer.h.1.mlp.c_proj", "transformer.h.1", "transformer.ln_f", "lm_head"],
    "llama": ["model.rotary_emb", "model.layers.1.input_layernorm", "model.layers.1.self_attn.k_proj",
              "model.layers.1.self_attn", "model.layers.1.mlp.act_fn", "model.layers.1.mlp.down_proj",
              "model.layers.1", "model.norm", "lm_head"],
}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_port_matches_transformers(name, dtype, ids):
    hf, port = pair(name, use_cache=False)
    report = netdef.compare(hf, port, (ids,), dtype=dtype)
    assert report.ok, str(report)
    compared = {r.path for r in report.rows if r.status == "ok"}
    assert set(BLOCK_ROWS[name]) <= compared, sorted(set(BLOCK_ROWS[name]) - compared)
    assert any(r.path.startswith("<output") for r in report.rows)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_port_matches_with_decomposed_emissions(name, ids):
    hf, port = pair(name, use_cache=False)
    with F.emission(attention="decomposed", rotary="decomposed"):
        report = netdef.compare(hf, port, (ids,))
        kinds = {layer.type.name for layer in netdef.trace(port, netdef.Input("x", (2, 7), "int64")).layers}
    assert report.ok, str(report)
    assert not kinds & {"ATTENTION_INPUT", "ROTARY_EMBEDDING"}


@pytest.mark.parametrize("rope", [
    {"rope_type": "linear", "rope_theta": 1000.0, "factor": 2.0},
    {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 16},
], ids=["linear", "llama3"])
def test_llama_rope_scaling_and_untied_variants(rope, ids):
    hf, port = pair("llama", use_cache=False, rope_parameters=rope, attention_bias=True, tie_word_embeddings=True,
                    head_dim=16)
    assert port.lm_head.weight is port.model.embed_tokens.weight
    report = netdef.compare(hf, port, (ids,))
    assert report.ok, str(report)


def test_unsupported_rope_type_is_named():
    with pytest.raises(ValueError, match="yarn"):
        llama.LlamaForCausalLM(llama_config(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}))


@pytest.mark.parametrize("shard", [False, True], ids=["single", "sharded"])
def test_loads_hugging_face_checkpoints(tmp_path, shard, ids):
    hf, _ = pair("gpt2", use_cache=False)
    hf.save_pretrained(tmp_path, max_shard_size="20KB" if shard else "5GB")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert ("model.safetensors.index.json" in files) == shard
    port = gpt2.GPT2LMHeadModel.from_pretrained(tmp_path)  # lm_head is tied: the file holds only wte
    assert netdef.compare(hf, port, (ids,)).ok


def test_sharded_index_errors_name_the_file(tmp_path):
    hf, _ = pair("gpt2")
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    index = tmp_path / "model.safetensors.index.json"
    text = index.read_text()
    shard = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))[0]
    (tmp_path / shard).unlink()
    with pytest.raises(netdef.WeightsError, match=shard):
        netdef.weights.load(index)
    index.write_text(text.replace('"weight_map"', '"weights"'))
    with pytest.raises(netdef.WeightsError, match="weight_map"):
        netdef.weights.load(index)


# ---- generation -------------------------------------------------------------------------------------------------
def _prompts():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, VOCAB, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # the second prompt is 4 tokens long, left-padded as tokenizers pad for generation
    ids[1, :3] = 0
    return ids, mask


@pytest.mark.parametrize("name,emission", [("gpt2", None), ("llama", None), ("llama", "decomposed")])
def test_greedy_generation_equals_transformers(name, emission):
    hf, port = pair(name)
    ids, mask = _prompts()
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=16, pad_token_id=0)
    with F.emission(attention=emission, rotary=emission, kv_cache=emission):
        got = netdef.generate(port, ids, max_new_tokens=16, attention_mask=mask)
    assert got.shape == (2, 7 + 16)
    assert torch.equal(got, expected), f"\n{got[:, 7:]}\n{expected[:, 7:]}"
    assert len(set(got[0, 7:].tolist())) > 1  # the weights are not so degenerate that any port would pass


@pytest.mark.parametrize("emission,cache", [("fused", 64), ("decomposed", (16, 64, 128))])
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_step_engine_builds_with_dynamic_profiles(name, emission, cache):
    _, port = pair(name)
    with F.emission(attention=emission, rotary=emission, kv_cache=emission):
        net = step_network(port, batch=(1, 2, 4), seq=(1, 8, 32), cache=cache, dtype="float16")
    kinds = {layer.type.name for layer in net.layers}
    assert ("KV_CACHE_UPDATE" in kinds) == (emission == "fused")
    plan = netdef.build(net, progress=False)
    meta = {i["name"]: i for i in plan.metadata["inputs"]}
    assert meta["input_ids"]["min"] == [1, 1] and meta["input_ids"]["max"] == [4, 32]
    assert meta["past_key.1"]["max"][2] == (cache if isinstance(cache, int) else cache[2])
    assert {o["name"] for o in plan.metadata["outputs"]} >= {"logits", "present_key.0", "present_value.1"}


@pytest.mark.gpu
@needs_gpu
def test_generation_on_the_engine_equals_transformers():
    hf, port = pair("gpt2")
    ids, mask = _prompts()
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=16, pad_token_id=0)
    got = netdef.generate(port, ids, max_new_tokens=16, attention_mask=mask, backend="engine")
    assert torch.equal(got.cpu(), expected)
