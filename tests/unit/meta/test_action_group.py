# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""group/corral.nspawn.all in module_defaults reaches every module (meta/runtime.yml action group)."""

import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/corral.nspawn.all:
      lock_timeout: -1
  tasks:
    - name: the group default reaches the module (a negative wait is refused by the module itself)
      corral.nspawn.settings: {name: groupdefault, settings_dir: /nonexistent, boot: true}
      check_mode: true
      register: r
      ignore_errors: true
    - ansible.builtin.assert:
        that: r is failed and 'lock_timeout' in r.msg and 'is negative' in r.msg
    - name: the read-only module takes the group's lock_timeout too (it failed with "Unsupported parameters")
      corral.nspawn.machine_info: {}
      register: info
      ignore_errors: true
    - ansible.builtin.assert:
        that: info is failed and 'lock_timeout' in info.msg and 'is negative' in info.msg
"""


def test_every_module_is_in_the_all_group():
    with open(os.path.join(ROOT, "meta", "runtime.yml"), encoding="utf-8") as handle:
        group = yaml.safe_load(handle)["action_groups"]["all"]
    modules = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "plugins", "modules")) if n.endswith(".py")
                     and not n.startswith("_"))
    assert sorted(group) == modules


def test_module_defaults_group_reaches_the_modules(tmp_path):
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    run = subprocess.run([playbook, str(tmp_path / "play.yml")], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), check=False, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "ok=4" in run.stdout and "ignored=2" in run.stdout, run.stdout[-3000:]
