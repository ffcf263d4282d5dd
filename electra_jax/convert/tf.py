"""Original TF1 checkpoints (google-research/electra) -> electra_jax parameters: TF names become
HF keys and `hf.hf_to_params` does the rest (one name table, one set of checks)."""

import importlib.util
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from electra_jax.cli import warn
from electra_jax.convert.hf import Params, StateDict, hf_to_params
from electra_jax.convert.names import HF_DEFAULTS
from electra_jax.errors import UserError
from electra_jax.model.config import ModelConfig, default_num_heads

# Optimiser slots and step counters, never weights.
SKIPPED = re.compile(r"(^global_step$|/adam_[mv]$|/Adam(_\d+)?$|^beta[12]_power)")
# TF scope -> tower side ("generator/" holds the generator's "electra/" tower).
SIDES = {"electra": "disc", "generator": "gen"}
SIDES |= {"discriminator_predictions": "disc", "generator_predictions": "gen"}
# Where the original's names differ from HF's, applied in order.
RENAMES = (
    (r"^generator/", "electra/"),
    (r"/layer_(\d+)/", r"/layer/\1/"),
    (r"(_embeddings)$", r"\1/weight"),
    (r"/(kernel|gamma)$", "/weight"),
    (r"/beta$", "/bias"),
    (r"/dense_1/", "/dense_prediction/"),
    (r"^generator_predictions/output_bias$", "generator_lm_head/bias"),
)


def tf_name_to_hf(name: str) -> tuple[str, str] | None:
    """Original TF variable name -> ("disc" | "gen", HF state-dict key), None if not a weight."""
    side = SIDES.get(name.partition("/")[0])
    if SKIPPED.search(name) or side is None:
        return None
    for pattern, replacement in RENAMES:
        name = re.sub(pattern, replacement, name)
    return side, name.replace("/", ".")


def _hf_config_from_shapes(sd: StateDict, num_heads: int | None) -> dict[str, Any]:
    """An HF config inferred from one tower's weights (TF checkpoints carry no config)."""
    for module in ("encoder.layer.0.attention.self.query", "embeddings.word_embeddings"):
        if f"electra.{module}.weight" not in sd:
            raise UserError(f"TF checkpoint has no electra.{module} (not an ELECTRA checkpoint?)")
    dim = lambda module, axis=0: int(sd[f"electra.{module}.weight"].shape[axis])
    H = dim("encoder.layer.0.attention.self.query")
    layers = {m.group(1) for k in sd if (m := re.match(r"electra\.encoder\.layer\.(\d+)\.", k))}
    return {
        **HF_DEFAULTS,
        "vocab_size": dim("embeddings.word_embeddings"),
        "embedding_size": dim("embeddings.word_embeddings", 1),
        "hidden_size": H,
        "num_hidden_layers": len(layers),
        "num_attention_heads": num_heads or default_num_heads(H),
        "intermediate_size": dim("encoder.layer.0.intermediate.dense"),
        "max_position_embeddings": dim("embeddings.position_embeddings"),
        "type_vocab_size": dim("embeddings.token_type_embeddings"),
    }


def tf_variables_to_params(
    variables: Mapping[str, np.ndarray], num_heads: int | None = None
) -> tuple[ModelConfig, Params]:
    """The original's TF variables -> (ModelConfig, params); heads: num_heads or hidden // 64."""
    towers: dict[str, StateDict] = {"disc": {}, "gen": {}}
    for name, value in variables.items():
        if (mapped := tf_name_to_hf(name)) is not None:
            array = np.asarray(value, np.float32)  # kernels: [in, out] -> HF's [out, in]
            towers[mapped[0]][mapped[1]] = array.T if name.endswith("/kernel") else array
    if ignored := [n for n in variables if tf_name_to_hf(n) is None and not SKIPPED.search(n)]:
        shown = ", ".join(ignored[:3])
        warn(f"ignored {len(ignored)} TF variable(s) not part of ELECTRA ({shown})")
    disc, gen = towers["disc"], towers["gen"]
    untied = any(k.startswith("electra.embeddings.") for k in gen)
    if not untied:  # tied: the generator reads the shared electra/embeddings tables
        gen.update({k: v for k, v in disc.items() if k.startswith("electra.embeddings.")})
    present = lambda sd: sd if any(k.startswith("electra.encoder.") for k in sd) else None
    disc, gen = present(disc), present(gen)
    if disc is None and gen is None:
        raise UserError("no ELECTRA variables found (expected electra/encoder/ or generator/)")
    disc_cfg = _hf_config_from_shapes(disc, num_heads) if disc else None
    gen_cfg = _hf_config_from_shapes(gen, None) if gen else None
    return hf_to_params(disc, gen, disc_cfg, gen_cfg, untied=untied)


def read_tf_checkpoint(path: str) -> dict[str, np.ndarray]:
    """Reads every ELECTRA weight of a TF checkpoint (a prefix, or a directory's latest)."""
    is_prefix = os.path.isfile(path + ".index")
    if not (is_prefix or os.path.isdir(path)):
        raise UserError(f"TF checkpoint {path} not found (pass the prefix, e.g. "
                        "model.ckpt-1000000, or the model directory)")  # fmt: skip
    if importlib.util.find_spec("tensorflow") is None:  # optional: only TF checkpoints need it
        raise UserError("reading TF checkpoints needs TensorFlow: pip install tensorflow")
    tf = importlib.import_module("tensorflow")
    prefix = path if is_prefix else tf.train.latest_checkpoint(path)
    if prefix is None:
        raise UserError(f"{path} holds no TF checkpoint (no `checkpoint` file)")
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
        return {n: reader.get_tensor(n) for n in names if tf_name_to_hf(n) is not None}
    except Exception as e:  # TF raises many types for unreadable checkpoints
        raise UserError(f"cannot read TF checkpoint {prefix} ({type(e).__name__})") from e
