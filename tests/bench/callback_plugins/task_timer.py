# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback for the benchmarks: each task's wall time (task start to the next one) as a JSON line."""

from __future__ import annotations

DOCUMENTATION = """
name: task_timer
type: aggregate
short_description: each task's wall time, for tests/bench
description:
  - At the end of a run prints one line C(TASK_TIMES <json>) with [name, seconds] per task in order,
    the time from a task's start to the next task's (or the end's), on the controller.
"""

import json
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._current = None
        self._since = time.monotonic()
        self._rows = []

    def _mark(self, name):
        now = time.monotonic()
        if self._current is not None:
            self._rows.append([self._current, round(now - self._since, 3)])
        self._current, self._since = name, now

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._mark(task.get_name())

    def v2_playbook_on_play_start(self, play):
        self._mark(None)

    def v2_playbook_on_stats(self, stats):
        self._mark(None)
        self._display.display("TASK_TIMES " + json.dumps([r for r in self._rows if r[0] is not None]))
