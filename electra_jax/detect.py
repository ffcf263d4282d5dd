"""Which tokens look replaced? p(replaced) = sigmoid(discriminator logit) for each token of
[CLS] text [SEP] or of --input-ids as given; a generator's top-5 fillers at each [MASK].

  python -m electra_jax.detect --checkpoint=DIR --text="the chef ate the meal" [--json]
  python -m electra_jax.detect --checkpoint=DIR --input-ids=2,1996,3 [--threshold=0.5]
"""

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from electra_jax.cli import ArgumentParser, note
from electra_jax.data.tokenizer import Tokenizer
from electra_jax.errors import UserError, exit_on_user_error
from electra_jax.files.model_io import export_dir, load_model
from electra_jax.model.config import ModelConfig
from electra_jax.model.electra import ElectraModel
from electra_jax.model.shapes import check_param_shapes

TOP_K = 5


def encode_text(
    tokenizer: Tokenizer, text: str, max_len: int, notes: list[str] | None = None
) -> list[int]:
    """[CLS] text [SEP] cut to `max_len` (noted); a literal "[MASK]" stays the mask id."""
    body: list[int] = []
    for piece in re.split(r"(\[MASK\])", text):
        body += [tokenizer.mask_id] if piece == "[MASK]" else tokenizer.encode(piece)
    if len(body) + 2 > max_len:
        if notes is not None:
            notes.append(f"text has {len(body) + 2} tokens; truncated to {max_len}")
        body = body[: max_len - 2]
    return [tokenizer.cls_id, *body, tokenizer.sep_id]


def detect(
    config: ModelConfig, params: dict, tokenizer: Tokenizer | None,
    text_or_ids: str | Sequence[int], threshold: float = 0.5,
) -> dict[str, Any]:  # fmt: skip
    """Per-token p(replaced) (and the generator's top-5 at each [MASK]) as a JSON-able dict."""
    params = nn.unbox(params)
    disc_parts = {"embeddings", "discriminator", "discriminator_head"}
    disc_parts |= {"gdes"} if config.embedding_sharing == "gdes" else set()
    if not (config.electra_objective and disc_parts <= set(params)):
        raise UserError("the checkpoint has no discriminator parameters; detect needs a "
                        f"discriminator with its head (parts: {sorted(params)})")  # fmt: skip
    notes: list[str] = []
    V, S = config.vocab_size, config.max_position_embeddings  # docs/spec.md notation
    if isinstance(text_or_ids, str):
        if tokenizer is None:
            raise UserError("the checkpoint has no tokenizer; pass --input-ids instead of --text")
        ids = encode_text(tokenizer, text_or_ids, S, notes)
    else:
        ids = [int(i) for i in text_or_ids]
    if not ids:
        raise UserError("no input tokens; pass a non-empty --text or --input-ids")
    if bad := [i for i in ids if not 0 <= i < V]:
        raise UserError(f"input id {bad[0]} is outside the vocabulary [0, {V}); pass ids below {V}")
    if len(ids) > S:
        raise UserError(f"{len(ids)} input ids exceed max_position_embeddings={S}; pass fewer ids")
    check_param_shapes(config, params, "checkpoint")
    model = ElectraModel(config, dtype=jnp.float32, param_dtype=jnp.float32)
    ids_1xL = jnp.asarray([ids], jnp.int32)
    inputs = ({"params": params}, ids_1xL, jnp.zeros_like(ids_1xL), jnp.ones_like(ids_1xL))
    apply = lambda method, *args: jax.jit(lambda v, *a: model.apply(v, *a, method=method))(*args)
    logits_L = np.asarray(apply(ElectraModel.discriminator_logits, *inputs)[0], np.float64)
    probs_L = 1.0 / (1.0 + np.exp(-logits_L))
    vocab_size = tokenizer.vocab_size if tokenizer is not None else 0
    token = lambda i: tokenizer.id_to_token(i) if i < vocab_size else str(i)
    result: dict[str, Any] = {
        "tokens": [token(i) for i in ids], "input_ids": ids,
        "discriminator_logits": [float(x) for x in logits_L],
        "replaced_prob": [float(p) for p in probs_L],
        "replaced": [bool(p >= threshold) for p in probs_L], "threshold": threshold, "notes": notes,
    }  # fmt: skip
    gen_parts = {"generator_head", "generator" if config.electra_objective else "discriminator"}
    gen_parts.add("generator_embeddings" if config.embedding_sharing == "untied" else "embeddings")
    if tokenizer is None or not gen_parts <= set(params):
        return result
    result["generator_top5"] = []  # the TOP_K fillers at each [MASK]
    if positions := [i for i, t in enumerate(ids) if t == tokenizer.mask_id]:
        positions_1xN = jnp.asarray([positions], jnp.int32)
        logits_1xNxV = apply(ElectraModel.generator_logits, *inputs, positions_1xN)
        probs_NxV = np.asarray(jax.nn.softmax(logits_1xNxV[0], axis=-1))
        for position, probs_V in zip(positions, probs_NxV, strict=True):
            top = [int(i) for i in np.argsort(-probs_V, kind="stable")[:TOP_K]]
            fill = {"position": position, "tokens": [token(i) for i in top], "ids": top}
            result["generator_top5"].append(fill | {"probs": [float(probs_V[i]) for i in top]})
    return result


def format_result(result: dict[str, Any], color: bool) -> str:
    rows = list(zip(result["tokens"], result["replaced_prob"], result["replaced"], strict=True))
    mark = lambda tok: f"\033[1;31m{tok}\033[0m" if color else f"*{tok}*"
    lines = [" ".join(mark(tok) if hit else tok for tok, _, hit in rows), ""]
    lines += [f"{'pos':>4}  {'token':<16} {'p(replaced)':>11}"]
    for pos, (tok, prob, hit) in enumerate(rows):
        lines.append(f"{pos:>4}  {tok:<16} {prob:>11.3f}{'  <- replaced?' if hit else ''}")
    for fill in result.get("generator_top5", []):
        guesses = ", ".join(map("{} {:.2f}".format, fill["tokens"], fill["probs"]))
        lines.append(f"generator at {fill['position']}: {guesses}")
    lines.append(f"legend: {'highlighted' if color else '*token*'} = p(replaced) >= "
                 f"{result['threshold']:.2f}, i.e. the discriminator thinks a generator put it "
                 "there; p(replaced) = sigmoid(logit)")  # fmt: skip
    return "\n".join(lines)


def parse_ids(value: str) -> list[int]:
    try:
        return [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError as e:
        message = f"--input-ids must be comma-separated integers, got {value!r}"
        raise argparse.ArgumentTypeError(message) from e


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m electra_jax.detect", description=__doc__)
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="exported model directory (or a pre-training workdir: its export/)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="text to check ([CLS] text [SEP])")
    source.add_argument("--input-ids", type=parse_ids, help="comma-separated ids, used as given")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threshold", type=float, default=0.5, help="mark p(replaced) >= this")
    args = parser.parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be in [0, 1], got {args.threshold}")
    return args


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.checkpoint = export_dir(args.checkpoint)  # a run's workdir: its export/
    config, params, tokenizer = load_model(args.checkpoint)
    source = args.text if args.text is not None else args.input_ids
    try:
        result = detect(config, params, tokenizer, source, threshold=args.threshold)
    except UserError as e:
        raise UserError(f"{args.checkpoint}: {e}") from e
    for message in result["notes"]:
        note(message)
    print(json.dumps(result) if args.json else format_result(result, color=sys.stdout.isatty()))


if __name__ == "__main__":
    main()
