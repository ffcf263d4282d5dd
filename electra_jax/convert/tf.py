"""Original TF1 checkpoints (google-research/electra) -> electra_jax parameters.

Variable names in the original (run_pretraining.py + model/modeling.py):
  electra/embeddings/{word_embeddings, position_embeddings, token_type_embeddings,
                      LayerNorm/{gamma,beta}}          shared by both towers unless untied
  electra/embeddings_project/{kernel,bias}             discriminator, when E != H
  electra/encoder/layer_i/attention/self/{query,key,value}/{kernel,bias}
  electra/encoder/layer_i/attention/output/{dense/{kernel,bias}, LayerNorm/{gamma,beta}}
  electra/encoder/layer_i/{intermediate/dense, output/dense, output/LayerNorm}/...
  generator/...                                        the same tower layout (scope "generator")
  generator/embeddings/...                             only with untied_generator_embeddings
  discriminator_predictions/{dense, dense_1}/{kernel,bias}
  generator_predictions/{dense/{kernel,bias}, LayerNorm/{gamma,beta}, output_bias}
Optimiser slots (`*/adam_m`, `*/adam_v`) and `global_step` are skipped.

The mapping is a pure function of a {name: array} dict (`tf_variables_to_params`), so it is
tested without TensorFlow; only `read_tf_checkpoint` needs it. TF names become HF keys
(kernels transposed to [out, in]) and `convert_hf.hf_to_params` does the rest, so both paths
share one set of checks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from electra_jax.cli import warn
from electra_jax.convert.hf import HF_DEFAULTS, Params, StateDict, hf_to_params
from electra_jax.errors import UserError
from electra_jax.model.config import ModelConfig, default_num_heads

SKIPPED = re.compile(r"(^global_step$|/adam_[mv]$|/Adam(_\d+)?$|^beta[12]_power)")
TOWER_SCOPES = {"electra": "disc", "generator": "gen"}


def _tower_key(rest: str) -> str | None:
    """`embeddings/...`, `embeddings_project/...` or `encoder/layer_i/...` -> HF key (no prefix)."""
    rest = re.sub(r"/LayerNorm/gamma$", "/LayerNorm/weight", rest)
    rest = re.sub(r"/LayerNorm/beta$", "/LayerNorm/bias", rest)
    rest = re.sub(r"/kernel$", "/weight", rest)
    if re.fullmatch(r"embeddings/(word|position|token_type)_embeddings", rest):
        rest += "/weight"
    rest = re.sub(r"^encoder/layer_(\d+)/", r"encoder/layer/\1/", rest)
    return "electra." + rest.replace("/", ".")


def tf_name_to_hf(name: str) -> tuple[str, str] | None:
    """Original TF variable name -> ("disc" | "gen", HF state-dict key), None if not a weight."""
    if SKIPPED.search(name):
        return None
    scope, _, rest = name.partition("/")
    if scope in TOWER_SCOPES:
        return TOWER_SCOPES[scope], _tower_key(rest)
    if scope == "discriminator_predictions":
        rest = re.sub(r"^dense_1/", "dense_prediction/", rest)
        rest = re.sub(r"/kernel$", "/weight", rest)
        return "disc", "discriminator_predictions." + rest.replace("/", ".")
    if scope == "generator_predictions":
        if rest == "output_bias":
            return "gen", "generator_lm_head.bias"
        rest = re.sub(r"/kernel$", "/weight", rest)
        rest = re.sub(r"LayerNorm/gamma$", "LayerNorm/weight", rest)
        rest = re.sub(r"LayerNorm/beta$", "LayerNorm/bias", rest)
        return "gen", "generator_predictions." + rest.replace("/", ".")
    return None


def _hf_config_from_shapes(sd: StateDict, num_heads: int | None) -> dict[str, Any]:
    """Infers an HF config from a tower's weights (TF checkpoints carry no config)."""
    V, E = sd["electra.embeddings.word_embeddings.weight"].shape
    key = "electra.encoder.layer.0.attention.self.query.weight"
    if key not in sd:
        raise UserError("TF checkpoint tower has no encoder/layer_0 (not an ELECTRA checkpoint?)")
    H = sd[key].shape[0]
    layers = {
        int(m.group(1)) for k in sd if (m := re.match(r"electra\.encoder\.layer\.(\d+)\.", k))
    }
    return {
        **HF_DEFAULTS,
        "vocab_size": int(V),
        "embedding_size": int(E),
        "hidden_size": int(H),
        "num_hidden_layers": len(layers),
        "num_attention_heads": num_heads or default_num_heads(int(H)),
        "intermediate_size": int(sd["electra.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(
            sd["electra.embeddings.position_embeddings.weight"].shape[0]
        ),
        "type_vocab_size": int(sd["electra.embeddings.token_type_embeddings.weight"].shape[0]),
    }


def tf_variables_to_hf(
    variables: Mapping[str, np.ndarray], num_heads: int | None = None
) -> tuple[StateDict | None, StateDict | None, dict | None, dict | None, bool]:
    """TF variables -> (disc state dict, gen state dict, disc config, gen config, untied).

    Configs are inferred from shapes: heads = max(1, hidden // 64) (the original's rule for
    the generator; `num_heads` overrides the discriminator's).
    """
    towers: dict[str, StateDict] = {"disc": {}, "gen": {}}
    ignored = []
    for name, value in variables.items():
        mapped = tf_name_to_hf(name)
        if mapped is None:
            if not SKIPPED.search(name):
                ignored.append(name)
            continue
        which, key = mapped
        array = np.asarray(value, np.float32)
        towers[which][key] = array.T if name.endswith("/kernel") else array  # [in,out]->[out,in]
    if ignored:
        warn(
            f"ignored {len(ignored)} TF variable(s) not part of ELECTRA ({', '.join(ignored[:3])})"
        )
    disc, gen = towers["disc"], towers["gen"]
    untied = any(k.startswith("electra.embeddings.") for k in gen)
    if not untied:  # tied: the generator reads the shared electra/embeddings tables
        gen.update({k: v for k, v in disc.items() if k.startswith("electra.embeddings.")})
    has_disc = any(k.startswith("electra.encoder.") for k in disc)
    has_gen = any(k.startswith("electra.encoder.") for k in gen)
    if not has_disc and not has_gen:
        raise UserError(
            "no ELECTRA variables found (expected electra/encoder/... or generator/...)"
        )
    if "electra.embeddings.word_embeddings.weight" not in (disc if has_disc else gen):
        raise UserError("TF checkpoint has no electra/embeddings/word_embeddings")
    disc_cfg = _hf_config_from_shapes(disc, num_heads) if has_disc else None
    gen_cfg = _hf_config_from_shapes(gen, None) if has_gen else None
    return (disc if has_disc else None, gen if has_gen else None, disc_cfg, gen_cfg, untied)


def tf_variables_to_params(
    variables: Mapping[str, np.ndarray], num_heads: int | None = None
) -> tuple[ModelConfig, Params]:
    """The original's TF variables ({name: array}) -> (ModelConfig, our params)."""
    disc, gen, disc_cfg, gen_cfg, untied = tf_variables_to_hf(variables, num_heads)
    return hf_to_params(disc, gen, disc_cfg, gen_cfg, untied=untied)


def read_tf_checkpoint(path: str) -> dict[str, np.ndarray]:
    """Reads every ELECTRA weight of a TF checkpoint (a prefix, or a directory's latest)."""
    is_prefix = os.path.isfile(path + ".index")
    if not (is_prefix or os.path.isdir(path)):
        raise UserError(
            f"TF checkpoint {path} not found (pass the prefix, e.g. model.ckpt-1000000, "
            "or the model directory)"
        )
    try:
        import tensorflow as tf
    except ImportError as e:
        raise UserError("reading TF checkpoints needs TensorFlow: pip install tensorflow") from e
    if not is_prefix:
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise UserError(f"{path} holds no TF checkpoint (no `checkpoint` file)")
        path = latest
    try:
        reader = tf.train.load_checkpoint(path)
        names = reader.get_variable_to_shape_map()
        return {n: reader.get_tensor(n) for n in names if tf_name_to_hf(n) is not None}
    except Exception as e:  # TF raises many types for unreadable checkpoints
        raise UserError(f"cannot read TF checkpoint {path} ({type(e).__name__})") from e
