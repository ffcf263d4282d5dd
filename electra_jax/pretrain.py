"""Pre-train ELECTRA: `python -m electra_jax.pretrain --config=configs/pretrain.py:tiny
--workdir=DIR [--config.FIELD=VALUE ...]` (the trainer is `electra_jax.train.trainer`).

Rerunning the same command resumes from the newest readable checkpoint. Exit status: 0 done
or preempted (checkpoint saved), 2 bad input or a failed checkpoint save, 3 a non-finite loss.
"""

import os
import sys
from collections.abc import Sequence

import ml_collections

from electra_jax.cli import config_parser, parse_config_args
from electra_jax.errors import exit_on_user_error, one_line_library_errors
from electra_jax.train.checkpoints import CheckpointSaveError
from electra_jax.train.trainer import EXIT_NONFINITE, NonFiniteLoss, train


def parse_args(argv: Sequence[str] | None = None) -> tuple[ml_collections.ConfigDict, str]:
    """(config, workdir) from the command line; bad flags print one line and exit 2."""
    parser = config_parser("pretrain", __doc__)
    args, config = parse_config_args(parser, argv, "configs/pretrain.py:tiny")
    return config, args.workdir


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    config, workdir = parse_args(argv)
    one_line_library_errors()
    try:
        train(config, workdir)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_NONFINITE)
    except CheckpointSaveError as e:
        # Orbax's failed writer tasks would log tracebacks again at interpreter shutdown; the
        # run's own cleanup has finished, so leave without it.
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)


if __name__ == "__main__":
    main()
