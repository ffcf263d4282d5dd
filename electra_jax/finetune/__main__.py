"""Fine-tune on a GLUE, SQuAD or built-in task: `python -m electra_jax.finetune
--config=configs/finetune.py:task=T,size=S --workdir=DIR [--config.FIELD=VALUE ...]`."""

from collections.abc import Sequence

from electra_jax.cli import config_parser, parse_config_args
from electra_jax.errors import exit_on_user_error
from electra_jax.finetune.trainer import run


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = config_parser("finetune", __doc__)
    args, config = parse_config_args(parser, argv, "configs/finetune.py:task=rte,size=small")
    run(config, args.workdir)


if __name__ == "__main__":
    main()
