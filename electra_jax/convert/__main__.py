r"""Convert checkpoints: Hugging Face or original TF -> an electra_jax model directory, and back.

  python -m electra_jax.convert --from=hf --input=HF_DISC --generator=HF_GEN --output=DIR
  python -m electra_jax.convert --from=tf --input=TF_DIR/model.ckpt-N --vocab=vocab.txt --output=DIR
  python -m electra_jax.convert --to=hf --input=DIR --output=HF_DISC --generator-output=HF_GEN
  python -m electra_jax.convert --to=hf --input=FINETUNE_WORKDIR/export --output=HF_DIR [--task=T]

A fine-tuned export converts with its head: GLUE tasks to ElectraForSequenceClassification,
tagging to ElectraForTokenClassification (QA heads have no Hugging Face model: refused).

Outputs are written atomically and never replace an existing directory (unless --overwrite).
An HF directory holding only an ElectraForMaskedLM (generator) converts as generator-only.
Every path may be a bucket (gs://); remote HF and TF inputs are read through a local copy.
"""

import argparse

from etils import epath

from electra_jax.cli import ArgumentParser, note
from electra_jax.convert import hf, hf_heads, tf
from electra_jax.data.tokenizer import Tokenizer, WordPieceTokenizer
from electra_jax.errors import UserError, exit_on_user_error
from electra_jax.files.model_io import load_model, read_model_meta, save_model
from electra_jax.model.config import ModelConfig
from electra_jax.storage import absolute, local_view


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m electra_jax.convert", description=__doc__)
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", choices=("hf", "tf"), help="input format")
    direction.add_argument("--to", dest="target", choices=("hf",), help="output format")
    add = parser.add_argument
    add("--input", required=True, help="HF dir, TF checkpoint, or our model dir")
    add("--output", required=True, help="directory to create")
    add("--generator", help="--from=hf: the HF generator (ElectraForMaskedLM) dir")
    add("--generator-output", help="--to=hf: also write the generator here")
    add("--untied", action="store_true", help="--from=hf: keep the generator's own embeddings")
    add("--vocab", help="vocab.txt to attach (default: the HF dir's vocab.txt)")
    lowercase = "with --vocab: lower-case and strip accents (uncased models; default on)"
    add("--lowercase", action=argparse.BooleanOptionalAction, default=True, help=lowercase)
    add("--num-heads", type=int, help="--from=tf: discriminator heads (default hidden // 64)")
    add("--task", help="--to=hf, a multi-task fine-tuned model: the task whose head to export")
    add("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    if args.source and args.task:
        parser.error("--task applies to --to=hf only")
    if args.target and (args.generator or args.untied or args.vocab or args.num_heads):
        parser.error("--generator/--untied/--vocab/--num-heads apply to --from only")
    if args.source and args.generator_output:
        parser.error("--generator-output applies to --to=hf only")
    if args.source == "tf" and (args.generator or args.untied):
        parser.error("--generator/--untied apply to --from=hf (a TF checkpoint holds both towers)")
    return args


def from_hf(args: argparse.Namespace) -> tuple[ModelConfig, dict, Tokenizer | None]:
    cfg, weights = hf.read_hf_config(args.input), hf.read_hf_weights(args.input)
    tokenizer = hf.read_hf_tokenizer(args.input)
    if hf.is_generator_state_dict(weights):
        if args.generator:
            raise UserError(f"--input {args.input} is a generator; pass the discriminator there")
        return (*hf.hf_to_params(None, weights, None, cfg), tokenizer)
    gen_weights = gen_cfg = None
    if args.generator:
        gen_cfg, gen_weights = hf.read_hf_config(args.generator), hf.read_hf_weights(args.generator)
        if not hf.is_generator_state_dict(gen_weights):
            raise UserError(f"--generator {args.generator} has no generator_predictions head; "
                            "pass the ElectraForMaskedLM (generator) directory there")  # fmt: skip
        tokenizer = tokenizer or hf.read_hf_tokenizer(args.generator)
    return (*hf.hf_to_params(weights, gen_weights, cfg, gen_cfg, args.untied), tokenizer)


def to_hf(args: argparse.Namespace) -> None:
    config, params, tokenizer = load_model(args.input)
    pad_id = tokenizer.pad_id if tokenizer is not None else 0
    head = read_model_meta(absolute(args.input)).get("head")  # a fine-tuned model's task heads
    if head is None and args.task:
        raise UserError(f"--task applies to fine-tuned models; {args.input} has no task head")
    if head is not None:
        task = hf_heads.pick_task(head, args.task, args.input)
        head_sd, head_fields = hf_heads.head_to_hf(params, config, task, args.input)
        parts = {t["part"] for t in head["tasks"]}
        params = {k: v for k, v in params.items() if k not in parts}
    disc_sd, gen_sd, disc_cfg, gen_cfg = hf.params_to_hf(params, config, pad_id)
    if head is not None and disc_sd is not None:
        disc_sd, disc_cfg = {**disc_sd, **head_sd}, {**disc_cfg, **head_fields}
    if disc_sd is None and (gen_sd is None or args.generator_output):
        raise UserError(  # the BERT baseline has only a masked-LM model
            f"{args.input} has no discriminator"
            + ("; its masked-LM model is written to --output alone" if gen_sd else "")
        )
    if args.generator_output and config.two_tower_generator:
        raise UserError("a two-tower (Electric) generator has no Hugging Face model; "
                        "drop --generator-output (the discriminator converts)")  # fmt: skip
    if args.generator_output and gen_sd is None:
        raise UserError(f"{args.input} has no generator parameters for --generator-output")
    outputs = [(args.output, disc_sd, disc_cfg) if disc_sd else (args.output, gen_sd, gen_cfg)]
    outputs += [(args.generator_output, gen_sd, gen_cfg)] if args.generator_output else []
    for directory, state_dict, hf_config in outputs:
        hf.write_hf_dir(directory, state_dict, hf_config, tokenizer, args.overwrite)
        print(f"wrote {absolute(directory)} ({hf_config['architectures'][0]})")
    if disc_sd is not None and gen_sd is not None and not args.generator_output:
        note("the model has a generator; pass --generator-output=DIR to export it too")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for path in (args.output, args.generator_output):  # fail before any work, damage nothing
        if path and epath.Path(path).exists() and not args.overwrite:
            path = absolute(path)
            raise UserError(f"{path} already exists; choose a new output or remove it")
    if args.target == "hf":
        return to_hf(args)
    with local_view(args.input) as args.input, local_view(args.generator or "") as generator:
        args.generator = generator or None  # safetensors and TF read local files only
        if args.source == "hf":
            config, params, tokenizer = from_hf(args)
        else:
            variables = tf.read_tf_checkpoint(args.input)
            (config, params), tokenizer = tf.tf_variables_to_params(variables, args.num_heads), None
    if args.vocab:
        tokenizer = WordPieceTokenizer(args.vocab, args.lowercase, args.lowercase)
    if tokenizer is not None and (tokens := tokenizer.vocab_size) > (size := config.vocab_size):
        raise UserError(f"vocabulary has {tokens} tokens but the model only vocab_size={size}; "
                        "pass the model's own vocab.txt")  # fmt: skip
    if tokenizer is None:
        note("no vocabulary attached (pass --vocab=vocab.txt to use --text with detect)")
    save_model(args.output, params, config, tokenizer, overwrite=args.overwrite)
    print(f"wrote {absolute(args.output)} (parts: {', '.join(sorted(params))})")


if __name__ == "__main__":
    main()
