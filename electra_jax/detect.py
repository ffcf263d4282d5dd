"""Which tokens look replaced? p(replaced) = sigmoid(discriminator logit) for each token of
[CLS] text [SEP] or of --input-ids as given; a generator's top-5 fillers at each [MASK]. A
masked-LM model (the `bert` baseline) has no discriminator: its top-5 tokens are shown instead,
at each [MASK], or (no [MASK] in the text) at every position, masked one at a time.

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
MAX_PROBED = 128  # positions a masked-LM model predicts, one masked row each


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


def heads_of(config: ModelConfig, params: dict) -> tuple[bool, bool]:
    """(has a discriminator with its head, has a masked-LM: generator or the BERT tower + head)."""
    parts = set(params)
    disc = {"embeddings", "discriminator", "discriminator_head"}
    disc |= {"gdes"} if config.embedding_sharing == "gdes" else set()
    mlm = {"generator_head", *config.generator_towers}
    mlm.add("generator_embeddings" if config.embedding_sharing == "untied" else "embeddings")
    return config.electra_objective and disc <= parts, mlm <= parts


def top_fillers(
    run: Any, rows_BxL: Any, positions_BxN: Any, token: Any, ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """The masked-LM's TOP_K tokens at `positions_BxN` of `rows_BxL` (one position per row or
    several in one row), with p(the token `ids` has at that position) when given."""
    logits_BxNxV = run(ElectraModel.generator_logits, rows_BxL, jnp.asarray(positions_BxN))
    probs_NxV = np.asarray(jax.nn.softmax(logits_BxNxV, axis=-1))
    probs_NxV = probs_NxV.reshape(-1, probs_NxV.shape[-1])
    fills = []
    for position, probs_V in zip(np.ravel(positions_BxN).tolist(), probs_NxV, strict=True):
        top = [int(i) for i in np.argsort(-probs_V, kind="stable")[:TOP_K]]
        fill = {"position": position, "tokens": [token(i) for i in top], "ids": top}
        fill["probs"] = [float(probs_V[i]) for i in top]
        if ids is not None:
            fill["token_prob"] = float(probs_V[ids[position]])
        fills.append(fill)
    return fills


def detect(
    config: ModelConfig, params: dict, tokenizer: Tokenizer | None,
    text_or_ids: str | Sequence[int], threshold: float = 0.5,
) -> dict[str, Any]:  # fmt: skip
    """Per-token p(replaced) (and the generator's top-5 at each [MASK]) as a JSON-able dict; for
    a masked-LM model (the `bert` baseline, a generator alone) its top-5 tokens instead."""
    params = nn.unbox(params)
    has_disc, has_mlm = heads_of(config, params)
    if not (has_disc or has_mlm):
        raise UserError("the checkpoint has neither a discriminator with its head nor a masked-LM "
                        f"head; detect needs one (parts: {sorted(params)})")  # fmt: skip
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

    def run(method: Any, ids_BxL: Any, *args: Any) -> jax.Array:
        """`method` of the model on rows of one segment without padding, jitted."""
        call = lambda v, x, *a: model.apply(
            v, x, jnp.zeros_like(x), jnp.ones_like(x), *a, method=method
        )
        return jax.jit(call)({"params": params}, jnp.asarray(ids_BxL, jnp.int32), *args)

    vocab_size = tokenizer.vocab_size if tokenizer is not None else 0
    token = lambda i: tokenizer.id_to_token(i) if i < vocab_size else str(i)
    result: dict[str, Any] = {"tokens": [token(i) for i in ids], "input_ids": ids, "notes": notes}
    if not has_disc:
        return result | masked_lm_view(config, tokenizer, ids, run, token, notes)
    logits_L = np.asarray(run(ElectraModel.discriminator_logits, [ids])[0], np.float64)
    probs_L = 1.0 / (1.0 + np.exp(-logits_L))
    result |= {
        "mode": "replaced_token_detection",
        "discriminator_logits": [float(x) for x in logits_L],
        "replaced_prob": [float(p) for p in probs_L],
        "replaced": [bool(p >= threshold) for p in probs_L], "threshold": threshold,
    }  # fmt: skip
    if tokenizer is None or not has_mlm:
        return result
    result["generator_top5"] = []  # the TOP_K fillers at each [MASK]
    if positions := [i for i, t in enumerate(ids) if t == tokenizer.mask_id]:
        result["generator_top5"] = top_fillers(run, [ids], [positions], token)
    return result


def masked_lm_view(
    config: ModelConfig, tokenizer: Tokenizer | None, ids: list[int], run: Any, token: Any,
    notes: list[str],
) -> dict[str, Any]:  # fmt: skip
    """A masked-LM model's top-5 at each [MASK] of `ids`, or (none there) at every non-special
    position, masked one at a time (one row each), with p(the token written there)."""
    if tokenizer is None:
        raise UserError("this masked-LM model has no tokenizer to say which id is [MASK]; "
                        "re-export it with its vocabulary")  # fmt: skip
    what = "the `bert` baseline" if not config.electra_objective else "a generator only"
    view = {"mode": "masked_lm", "model": f"masked-LM model ({what}, no discriminator)"}
    if positions := [i for i, t in enumerate(ids) if t == tokenizer.mask_id]:
        return view | {"masked_lm_top5": top_fillers(run, [ids], [positions], token)}
    special = {tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id}
    positions = [i for i, t in enumerate(ids) if t not in special]
    if not positions:
        raise UserError("no token to predict; pass some text")
    if len(positions) > MAX_PROBED:
        notes.append(f"masked-LM predictions for the first {MAX_PROBED} of {len(positions)} "
                     "tokens; put [MASK] where you want them")  # fmt: skip
        positions = positions[:MAX_PROBED]
    ids_NxL = np.tile(np.asarray(ids, np.int32), (len(positions), 1))
    ids_NxL[np.arange(len(positions)), positions] = tokenizer.mask_id
    positions_Nx1 = [[p] for p in positions]
    return view | {"masked_lm_top5": top_fillers(run, ids_NxL, positions_Nx1, token, ids)}


def format_result(result: dict[str, Any], color: bool) -> str:
    if result.get("mode") == "masked_lm":
        return format_masked_lm(result)
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


def format_masked_lm(result: dict[str, Any]) -> str:
    """A masked-LM model's view: its top-5 tokens per position instead of p(replaced)."""
    lines = [" ".join(result["tokens"]), ""]
    lines.append(f"{result['model']}: no p(replaced) to show; its top-{TOP_K} tokens instead")
    lines.append(f"{'pos':>4}  {'token':<16} {'p(token)':>8}  top-{TOP_K}")
    for fill in result["masked_lm_top5"]:
        prob = f"{fill['token_prob']:>8.3f}" if "token_prob" in fill else f"{'-':>8}"
        guesses = ", ".join(map("{} {:.3f}".format, fill["tokens"], fill["probs"]))
        lines.append(
            f"{fill['position']:>4}  {result['tokens'][fill['position']]:<16} {prob}  {guesses}"
        )
    probed = "at each [MASK]"
    if "token_prob" in result["masked_lm_top5"][0]:
        probed = ("with each position masked in turn; p(token) = its probability of the token "
                  "written there (low: unexpected there); put [MASK] in --text to ask about "
                  "chosen positions only")  # fmt: skip
    lines.append(f"legend: the masked-LM's top-{TOP_K} {probed}")
    return "\n".join(lines)


def parse_ids(value: str) -> list[int]:
    try:
        return [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError as e:
        message = f"--input-ids must be comma-separated integers, got {value!r}"
        raise argparse.ArgumentTypeError(message) from e


def build_parser() -> ArgumentParser:
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
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
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
