# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image tests' module and roots: FakeModule (the shared fake running real cp/tar/ssh-keygen unless an answer
names a word of the argv), a tiny template root, normalized image params (test_images*.py, test_deletion, test_passwd)."""

import os
import subprocess

from ansible_collections.corral.nspawn.plugins.module_utils import images
from ansible_collections.corral.nspawn.tests.unit import fakes


class FakeModule(fakes.FakeModule):
    """The shared fake running real commands (cp, tar, ssh-keygen) unless an answer names a word of the argv;
    no machined, no systemctl."""

    def __init__(self, check_mode=False, missing=(), answers=None):
        super().__init__(check_mode=check_mode, answers=answers, real=True)
        self.missing = set(missing) | {"systemctl", "machinectl", "importctl"}

    def get_bin_path(self, name, *args, **kwargs):
        return None if name in self.missing else super().get_bin_path(name)

    def _answer(self, argv):
        words = set(argv) | {os.path.basename(a) for a in argv}
        return next((answer for word, answer in self.answers.items() if word in words), None)


def make_template(path):
    """A tiny root: hardlinks, a symlink, shadow, ssh host key, securetty, xattr-free but mode-rich."""
    for d in ("etc/ssh", "usr/lib/systemd/system", "root", "var/lib/dbus"):
        os.makedirs(os.path.join(path, d))
    files = {"etc/machine-id": "0123456789abcdef0123456789abcdef\n", "etc/hostname": "template\n",
             "etc/shadow": "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
             "etc/securetty": "console\ntty1\n", "var/lib/dbus/machine-id": "0123\n",
             "usr/lib/systemd/system/systemd-networkd.service": "[Install]\nWantedBy=multi-user.target\n"}
    for rel, text in files.items():
        with open(os.path.join(path, rel), "w", encoding="utf-8") as handle:
            handle.write(text)
    os.chmod(os.path.join(path, "etc/shadow"), 0o640)
    os.link(os.path.join(path, "etc/hostname"), os.path.join(path, "etc/hostname.hardlink"))
    os.symlink("/etc/hostname", os.path.join(path, "etc/abs-link"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    os.path.join(path, "etc/ssh/ssh_host_ed25519_key")], check=True)
    return path


def params(machines_dir, **kw):
    return images.normalize(dict({"name": "web1", "machines_dir": machines_dir}, **kw))
