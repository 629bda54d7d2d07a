#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image
short_description: Build, import, clone and remove systemd-nspawn container root filesystems
version_added: 0.1.0
description:
  - Makes sure the container root O(machines_dir)/O(name) exists (O(state=present)) or not (O(state=absent)).
  - "A missing root is made from O(source): bootstrapped (C(debootstrap), C(pacstrap), C(dnf --installroot),
    C(zypper --root), C(mkosi)), imported from a tar or raw image (local file or URL), cloned from another image
    (btrfs snapshot when O(machines_dir) is btrfs, else C(cp -a --reflink=auto) keeping attributes, xattrs, ACLs
    and hardlinks), or copied from a local directory."
  - The root is built in O(machines_dir)/C(.corral/staging/NAME) on the same file system, prepared there, and
    renamed into place only when complete. A run that was interrupted (even by C(kill -9)) leaves only the
    staging directory; the next run stops processes left working in it, unmounts what they mounted and removes it
    before building again. C(.corral) is a name no machine can have, and only a directory carrying the build
    marker written when it was made is ever removed this way. An import through systemd-importd uses a random
    temporary image name recorded in that marker.
  - When it builds a root, the module writes a build record to O(machines_dir)/C(.corral/records/NAME.json) (the
    root's inode and a random build id, which is also stored in the root). M(corral.nspawn.fleet) purges only
    roots whose record matches.
  - O(machines_dir) holds the roots. systemd-importd (O(importer=importctl) or V(machinectl)) imports only into
    C(/var/lib/machines). O(state=absent) touches nothing outside O(machines_dir) and never follows a symlink out
    of it.
  - An existing root is never rebuilt unless O(force=true); source options that differ from the ones it was built
    with are reported as a warning.
  - The preparation options (O(hostname), O(root_password), O(authorized_keys), O(address), O(enable_networkd),
    O(enable_resolved), O(securetty_fix)) are applied idempotently to new and existing roots. O(reset_machine_id)
    and O(regenerate_ssh_host_keys) apply only to a root this run creates, so clones never share a machine-id or
    SSH host keys and a container that booted keeps its identity.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.shared.machines_dir
options:
  name:
    description: Machine name (hostname rules, at most 64 characters, not C(.host)); the root is O(machines_dir)/NAME.
    type: str
    required: true
  state:
    description:
      - V(present) makes the root exist; V(absent) removes it (refused while the machine runs unless O(force=true)).
      - V(absent) removes the root you name whether or not corral.nspawn built it (you asked for exactly that root),
        and its build record.
    type: str
    choices: [present, absent]
    default: present
  source:
    description:
      - How to make a root that does not exist. Required to create one; may be omitted to only prepare an existing root.
      - V(debootstrap) uses O(suite), O(variant), O(components), O(include), O(exclude), O(mirror), O(keyring), O(arch).
      - V(pacstrap) uses O(packages), O(pacstrap_host_cache), O(pacstrap_init_keyring).
      - V(dnf) uses O(releasever), O(packages), O(repos), O(arch); V(zypper) uses O(releasever), O(packages), O(repos).
      - V(mkosi) builds the config directory O(mkosi_directory) with C(--format=directory).
      - V(tar) and V(raw) import O(path) or O(url), verified with O(checksum). V(raw) yields C(NAME.raw).
      - V(clone) copies the image O(clone_from) of O(machines_dir); V(directory) copies the directory O(path).
      - The bootstrap tool must be installed on the host; the module fails before any change when it is not.
    type: str
    choices: [debootstrap, pacstrap, dnf, zypper, mkosi, tar, raw, clone, directory]
  force:
    description:
      - With O(state=present), rebuild an existing root whose recorded source options differ from the given ones
        (or that was not built by this module). The new root is built in staging and swapped in; the machine must be stopped.
      - With O(state=absent), terminate a running machine before removing its root.
    type: bool
    default: false
  suite:
    description: Debian or Ubuntu suite for V(debootstrap), for example V(bookworm) or V(noble).
    type: str
  variant:
    description: debootstrap C(--variant), for example V(minbase). Omit for debootstrap's default.
    type: str
  components:
    description: debootstrap C(--components), for example V(main) and V(universe).
    type: list
    elements: str
  include:
    description: Extra packages (debootstrap C(--include)); a bootable container needs at least V(systemd) and V(dbus).
    type: list
    elements: str
  exclude:
    description: Packages to leave out (debootstrap C(--exclude)).
    type: list
    elements: str
  mirror:
    description: Mirror URL for debootstrap. Omit to use debootstrap's own default.
    type: str
  keyring:
    description: Keyring file debootstrap verifies the Release file with (C(--keyring)).
    type: path
  arch:
    description: Target architecture (debootstrap C(--arch), dnf C(--forcearch)).
    type: str
  packages:
    description: Packages for V(pacstrap) (default V(base)), V(dnf) and V(zypper) (required for those two).
    type: list
    elements: str
  pacstrap_host_cache:
    description: Use the host's package cache (C(pacstrap -c)).
    type: bool
    default: true
  pacstrap_init_keyring:
    description: Initialize a new pacman keyring in the root (C(pacstrap -K)).
    type: bool
    default: true
  releasever:
    description: Distribution release for V(dnf) (required) and V(zypper) (C(--releasever)).
    type: str
  repos:
    description: V(dnf) repository ids to enable (C(--repo=)); V(zypper) repository URLs added to the root before installing.
    type: list
    elements: str
  mkosi_directory:
    description: mkosi configuration directory for V(mkosi).
    type: path
  extra_args:
    description: Extra arguments passed to the bootstrap tool as they are (each item one argument, no shell).
    type: list
    elements: str
  path:
    description: Local tar or raw file (V(tar), V(raw); compressed tarballs work) or directory (V(directory)).
    type: path
  url:
    description: URL of a tar or raw image; downloaded into the staging directory before import.
    type: str
  checksum:
    description:
      - Expected checksum of the file as C(ALGORITHM:HEX), ALGORITHM one of V(sha256), V(sha384), V(sha512),
        V(sha1), V(md5). A mismatch fails before anything is imported.
    type: str
  validate_certs:
    description: Verify the TLS certificate of O(url).
    type: bool
    default: true
  importer:
    description:
      - V(auto) uses C(importctl) (systemd 256+) or C(machinectl import-tar/import-raw) when the host booted with systemd and
        O(machines_dir) is C(/var/lib/machines), else unpacks with GNU C(tar) (xattrs, ACLs, numeric owners).
      - V(raw) images need systemd-importd.
    type: str
    choices: [auto, importctl, machinectl, tar]
    default: auto
  clone_from:
    description: Name of the image in O(machines_dir) to clone with O(source=clone) (a template).
    type: str
  hostname:
    description: Written to C(/etc/hostname) in the root.
    type: str
  reset_machine_id:
    description: Leave an empty C(/etc/machine-id) in a root this run creates, so the container gets its own id at first boot.
    type: bool
    default: true
  regenerate_ssh_host_keys:
    description: Replace SSH host keys found in a root this run creates by new ones (needs C(ssh-keygen) on the host).
    type: bool
    default: true
  root_password:
    description: Root password in plain text, hashed on the host (SHA-512 crypt); not changed when it already matches.
    type: str
  root_password_hash:
    description: Root password as a crypt(3) hash, written to C(/etc/shadow) as it is.
    type: str
  authorized_keys:
    description: Public keys written to C(/root/.ssh/authorized_keys) (the whole file is managed). An empty list empties it.
    type: list
    elements: str
  enable_networkd:
    description:
      - Enable C(systemd-networkd) inside the root (the links C(systemctl enable) would make, created inside the root
        without following its links out). Defaults to V(true) when O(address), O(address6) or O(network_links)
        is given.
      - V(false) leaves it as it is.
    type: bool
  enable_resolved:
    description: Enable C(systemd-resolved) inside the root. V(false) leaves it as it is.
    type: bool
    default: false
  address:
    description:
      - Static address with prefix length for the container's C(host0) interface, written to
        C(/etc/systemd/network/10-corral-host0.network) in the root (it sorts before the stock DHCP file).
    type: str
  gateway:
    description: Gateway for O(address); defaults to the first address of its network.
    type: str
  address6:
    description:
      - Static IPv6 address with prefix length for C(host0), written into the same file as O(address). Without
        O(address), C(host0) takes its IPv4 address by DHCP.
    type: str
  gateway6:
    description: IPv6 gateway for O(address6); defaults to the first address of its network.
    type: str
  network_links:
    description:
      - Container-side links to configure with DHCP (IPv4 and IPv6 router advertisements), one
        C(/etc/systemd/network/10-corral-LINK.network) each, for example C(host0) (the veth of a zone, bridge or
        plain veth), C(mv-eth0) (macvlan), C(iv-eth0) (ipvlan) or a moved interface. A trailing C(*) matches names
        starting with it. C(host0) with O(address) or O(address6) gets the static file instead.
      - M(corral.nspawn.fleet) fills it in from each machine's attachment and settings; V([]) there opts out.
    type: list
    elements: str
  dns:
    description: DNS servers for O(address).
    type: list
    elements: str
  securetty_fix:
    description:
      - Add C(pts/0) to C(pts/9) to C(/etc/securetty) (and its factory copy) where the image has one, so
        C(pam_securetty) lets root log in with C(machinectl login).
    type: bool
    default: false
  setup_running:
    description:
      - What to do with changed preparation options (O(hostname), O(authorized_keys), O(address)...) while the
        machine runs. A running container owns every file of its root.
      - V(defer) writes nothing into the running root; the changes are listed in RV(deferred), RV(pending_restart)
        is true, a warning says so, and the first run that finds the machine stopped makes them.
      - V(apply) writes them now (through the same root-confined file access as always; paths are resolved inside
        the root and never followed out of it); the container sees them after a restart.
    type: str
    choices: [defer, apply]
    default: defer
attributes:
  check_mode:
    description: Nothing on disk changes; RV(changes) and the diff list what a real run would create, prepare or remove.
    support: full
  diff_mode:
    description: Shows the root's state before and after with the list of actions, and whole-file diffs of prepared files.
    support: full
  platform:
    description: Linux hosts with systemd 249 or newer; the bootstrap tool of the chosen O(source).
    support: full
    platforms: posix
notes:
  - Long builds return RV(elapsed) and per-step RV(timings); Ansible modules cannot stream progress.
  - The module has no C(wait) or C(timeout) option because it never starts a container. With O(force=true) and
    O(state=absent) it stops a running machine and waits up to 60 seconds for it to be gone before it removes the
    root. To start the machine and wait for it to boot, use M(corral.nspawn.machine).
seealso:
  - module: corral.nspawn.machine
  - module: corral.nspawn.fleet
"""

EXAMPLES = r"""
- name: Debian 12 template with systemd, bootstrapped from the distribution's default mirror
  corral.nspawn.image:
    name: debian12
    source: debootstrap
    suite: bookworm
    variant: minbase
    include: [systemd, systemd-sysv, dbus, iproute2]

- name: Five web containers cloned from the template, each with its own hostname and machine-id
  corral.nspawn.image:
    name: "web{{ item }}"
    source: clone
    clone_from: debian12
    hostname: "web{{ item }}"
    authorized_keys:
      - "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"
  loop: [1, 2, 3, 4, 5]

- name: Import a tarball with a verified checksum, static address on host0
  corral.nspawn.image:
    name: db1
    source: tar
    path: /srv/images/debian12.tar.xz
    checksum: "sha256:9f2c1b7e0d6a4f9e8c3b2a1d0e9f8c7b6a5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"
    address: 10.0.0.5/24
    gateway: 10.0.0.1
    dns: [10.0.0.1]

- name: Arch Linux root (on an Arch host)
  corral.nspawn.image:
    name: arch1
    source: pacstrap
    packages: [base]
    securetty_fix: true

- name: Remove old1, terminating it if it runs
  corral.nspawn.image:
    name: old1
    state: absent
    force: true
"""

RETURN = r"""
image_path:
  description: The root (C(NAME.raw) for raw images).
  returned: always
  type: str
  sample: /var/lib/machines/web1
created:
  description: Whether the root was (or in check mode would be) created by this run.
  returned: always
  type: bool
rebuilt:
  description: Whether an existing root was (or would be) rebuilt because of O(force).
  returned: always
  type: bool
removed:
  description: Whether the root was (or would be) removed.
  returned: always
  type: bool
method:
  description:
    - How the root was (or would be) made, for example V(debootstrap), V(machinectl import-tar), V(tar extract),
      V(btrfs snapshot), V(cp --reflink=auto); empty when nothing was built.
  returned: always
  type: str
  sample: btrfs snapshot
changes:
  description: What was done (or would be done), in words, one item per action.
  returned: always
  type: list
  elements: str
  sample: ["create /var/lib/machines/web1 from clone (debian12)", "machine-id (emptied): update etc/machine-id"]
restart_required:
  description: An existing root was changed; a running container sees the change after a restart.
  returned: always
  type: bool
deferred:
  description: Preparation changes not made because the machine runs and O(setup_running=defer).
  returned: always
  type: list
  elements: str
  sample: ["hostname: update etc/hostname"]
pending_restart:
  description: RV(deferred) is not empty; stop the machine (or restart it with a run in between) to apply them.
  returned: always
  type: bool
elapsed:
  description: Seconds the run took.
  returned: always
  type: float
  sample: 0.84
timings:
  description: Seconds per step (C(cleanup), C(build), C(setup)) that ran.
  returned: always
  type: dict
  sample: {"cleanup": 0.0, "build": 0.71, "setup": 0.05}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import images, images_io, lock
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module


def run(module) -> dict:
    """The image under the host lock; the diff only in diff mode (errors become fail_json in run_module)."""
    result = lock.run_locked(module, lambda: images_io.ensure_image(module, module.params))
    diff = result.pop("diff")
    if module._diff and diff:
        result["diff"] = diff
    return result


def main():
    module = AnsibleModule(argument_spec=dict(images.IMAGE_OPTION_SPEC, **lock.LOCK_SPEC),
                           mutually_exclusive=images.IMAGE_MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    run_module(module, run)


if __name__ == "__main__":
    main()
