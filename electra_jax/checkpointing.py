"""Orbax checkpoints of a run: train state and data-iterator state as separate items.

Saves are asynchronous and atomic (Orbax writes a temporary directory and renames it on
commit), so a kill mid-save leaves only finished steps visible. Restore walks back from the
newest step to the first one that reads, and says in one line when it skipped a bad one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import orbax.checkpoint as ocp


class RunCheckpoints:
    """`workdir/checkpoints/<step>/{state,data}`, keep-N, preemption-aware."""

    def __init__(self, directory: str, keep: int, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, force: bool = False) -> bool:
        import grain

        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
        )
        return self.manager.save(step, args=args, force=force)

    def restore_latest(self, abstract_state: Any, data_iterator: Any) -> tuple[int, Any] | None:
        """Restores the newest readable step into `data_iterator`; returns (step, state)."""
        import grain

        for step in sorted(self.manager.all_steps(), reverse=True):
            args = ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=grain.checkpoint.CheckpointRestore(data_iterator),
            )
            try:
                restored = self.manager.restore(step, args=args)
            except Exception as e:  # any unreadable file: fall back to an older step
                print(
                    f"warning: checkpoint step {step} in {self.directory} is unreadable "
                    f"({type(e).__name__}); falling back to an earlier one",
                    file=sys.stderr,
                )
                continue
            return step, restored.state
        return None

    def reached_preemption(self, step: int) -> bool:
        return self.manager.reached_preemption(step)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
