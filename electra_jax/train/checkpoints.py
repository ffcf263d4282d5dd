"""Orbax checkpoints of a run: train state and data-iterator state as separate items.

Saves are asynchronous and atomic (a kill mid-save leaves only finished steps); a failed save
stops the run (`CheckpointSaveError`), committed steps intact. Restore never throws a run away:
another model stops it (`CheckpointMismatch`), a transient read error is retried, then stops
(`CheckpointReadError`), both touching nothing; only a corrupt step is moved aside to
`<step>.unreadable` (kept for inspection) and the next older one tried. A remote directory
(gs://) is Orbax's own business (TensorStore writes the arrays); moving a step aside there is a
copy and delete of its objects (gcsfs)."""

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from electra_jax.errors import UserError
from electra_jax.model.shapes import shapes_of
from electra_jax.storage import absolute, make_dirs, move_tree

UNREADABLE_SUFFIX = ".unreadable"
RETRY_DELAYS_S = (2.0, 8.0)  # waits before the second and third read of a step
TRANSIENT = re.compile(
    r"timed? ?out|temporar|unavailable|connection|reset by peer|deadline|\b(429|50[234])\b", re.I
)


class CheckpointMismatch(UserError):
    """A checkpoint holds another model than the run's: resuming would set the run aside."""


class CheckpointReadError(UserError):
    """A checkpoint stayed unreadable through the retries of a transient error."""


class CheckpointSaveError(UserError):
    """Writing a checkpoint failed; the message names the step, the cause and the fix."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, for one-line reports of library errors."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def is_transient(error: BaseException | None) -> bool:
    """A network or service error that may pass (as opposed to a corrupt file)."""
    while error is not None:
        if isinstance(error, ConnectionError | TimeoutError) or TRANSIENT.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def describe_write_error(error: BaseException) -> str:
    """The OS cause of a failed write ("No space left on device (errno 28)") when known; Orbax's
    array writes go through tensorstore, which reports the OS error as text."""
    found = re.search(r"os_error_code='?(\d+)", str(error))
    if found:
        code = int(found.group(1))
        return f"{os.strerror(code)} (errno {code})"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror} (errno {error.errno})"
    return first_line(error)


class PreemptionFlag:
    """SIGTERM (preemption notice) sets the flag; the loop saves and exits cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "requested", True))

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


class RunCheckpoints:
    """`workdir/checkpoints/<step>/{state,data}`, keep-N, preemption-aware."""

    def __init__(
        self, directory: str, keep: int, async_save: bool = True, this_host_only: bool = False
    ):
        """`this_host_only`: no cross-host coordination (fine-tuning, where every host holds the
        whole state and only host 0 saves; the others read what it wrote)."""
        self.directory = absolute(directory)
        me = jax.process_index()
        alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
        if this_host_only:  # Orbax creates the root only when coordinating the hosts
            make_dirs(self.directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not this_host_only, enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            **({"multiprocessing_options": alone} if this_host_only else {}),
        )  # fmt: skip
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._pending_step: int | None = None

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, force: bool = False) -> bool:
        """Starts an async save of `step` (a failure of the previous one surfaces here)."""
        import grain

        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:  # None: the state alone (fine-tuning's order is the step's)
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        args = ocp.args.Composite(**items)
        with self._failures_as_save_error(step):
            started = self.manager.save(step, args=args, force=force)
        if started:
            self._pending_step = step
        return started

    def wait(self) -> None:
        """Blocks until the pending save is committed; raises CheckpointSaveError if it failed."""
        with self._failures_as_save_error(self._pending_step):
            self.manager.wait_until_finished()
        self._pending_step = None

    @contextlib.contextmanager
    def _failures_as_save_error(self, step: int | None) -> Iterator[None]:
        """Any Orbax error while saving becomes a one-line CheckpointSaveError."""
        try:
            yield
        except UserError:
            raise
        except Exception as e:
            self.manager.reload()
            kept = list(self.manager.all_steps()) or "none"
            raise CheckpointSaveError(
                f"saving checkpoint step {self._pending_step or step} in {self.directory} failed "
                f"({describe_write_error(e)}); committed steps {kept} are intact. Free disk "
                "space (or fix the path's permissions) and rerun the same command to resume"
            ) from e

    def restore_latest(
        self, abstract_state: Any, data_iterator: Any, config_change: str = ""
    ) -> tuple[int, Any] | None:
        """Restores the newest readable step (into `data_iterator` unless None); returns
        (step, state).

        `config_change` (the fields that differ from the saved config) goes into the message
        of a CheckpointMismatch."""
        import grain

        for step in sorted(self.manager.all_steps(), reverse=True):
            self._check_same_model(step, abstract_state.params, config_change)
            items = {"state": ocp.args.StandardRestore(abstract_state)}
            if data_iterator is not None:
                items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
            args = ocp.args.Composite(**items)
            for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
                try:
                    return step, self.manager.restore(step, args=args).state
                except Exception as e:
                    if not is_transient(e):
                        error = e
                        break
                    if delay is None:
                        raise CheckpointReadError(
                            f"reading checkpoint step {step} in {self.directory} failed "
                            f"{attempt + 1} times ({first_line(e)}); nothing was changed: "
                            "check the storage's connectivity and rerun the same command"
                        ) from e
                    time.sleep(delay)
            moved = self._move_aside(step)
            print(
                f"warning: checkpoint step {step} in {self.directory} is unreadable "
                f"({first_line(error)}); moved it to {moved}, falling back to an earlier step",
                file=sys.stderr,
                flush=True,
            )
        return None

    def _check_same_model(self, step: int, params: Any, config_change: str) -> None:
        """Raises CheckpointMismatch when `step`'s stored parameter shapes differ from the run's
        (metadata only; an unreadable step is left to the restore's fallback)."""
        path = epath.Path(self.directory) / str(step) / "state"
        try:
            saved = shapes_of(ocp.StandardCheckpointHandler().metadata(path)["params"])
        except Exception:  # corrupt or missing metadata: the restore below decides
            return
        run = shapes_of(params)
        if saved == run:
            return
        differ = sorted(k for k in saved.keys() | run.keys() if saved.get(k) != run.get(k))
        shown = ", ".join(f"{k} {saved.get(k, 'absent')} (this run: {run.get(k, 'absent')})"
                          for k in differ[:2])  # fmt: skip
        raise CheckpointMismatch(
            f"checkpoint step {step} in {self.directory} holds another model "
            f"({config_change or shown}); nothing was changed: rerun with the saved config "
            "(config.json beside it) or pick a new --workdir"
        )

    def _move_aside(self, step: int) -> str:
        """Renames an unreadable step so that no later resume or save trips over it."""
        source = f"{self.directory.rstrip('/')}/{step}"
        target, n = f"{source}{UNREADABLE_SUFFIX}", 1
        while epath.Path(target).exists():
            n += 1
            target = f"{source}{UNREADABLE_SUFFIX}{n}"
        move_tree(source, target)
        self.manager.reload()
        return target

    def reached_preemption(self, step: int) -> bool:
        return self.manager.reached_preemption(step)

    def close(self) -> None:
        """Finishes pending work; on the error path a second save error is not raised again."""
        try:
            self.manager.close()
        except Exception as e:
            print(f"warning: closing checkpoints: {first_line(e)}", file=sys.stderr)
