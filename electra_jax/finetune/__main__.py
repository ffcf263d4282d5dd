"""Entry point: `python -m electra_jax.finetune --config=configs/finetune.py:task=T,size=S
--workdir=DIR [--config.FIELD=VALUE ...]` (see configs/finetune.py)."""

from __future__ import annotations

import sys

from electra_jax.errors import exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    from electra_jax.config_cli import parse_config_flags
    from electra_jax.finetune.trainer import run

    config, workdir = parse_config_flags(argv if argv is not None else sys.argv, "finetune")
    run(config, workdir)


if __name__ == "__main__":
    main()
