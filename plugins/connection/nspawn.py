# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: nspawn
short_description: Run tasks inside systemd-nspawn containers, on this host or on a host reached by SSH
description:
  - Runs commands inside a running systemd-nspawn container through
    C(systemd-run --machine=NAME --pipe --wait --quiet) on the container host, with the command's exit
    status and stderr passed through. Containers without a system bus (booted without systemd or D-Bus)
    are entered with C(nsenter) into the container's leader process instead (O(nspawn_method)).
  - Local mode (O(nspawn_host) unset) runs that on the controller, which is then the container host.
    Remote mode reaches the container host with the C(ssh) client, using O(nspawn_host_user),
    O(nspawn_host_port), O(nspawn_host_private_key_file) and the SSH arguments the user already gives
    Ansible, through one multiplexed master connection (C(ControlMaster)/C(ControlPersist)), so a task
    costs about one SSH round trip.
  - Pipelining is on by default (a module task costs one exec). Files are put and fetched through stdin and stdout
    of a process inside the container that runs as the container user, byte for byte; in containers with
    private users (C(PrivateUsers=)) the files belong to that user inside the container.
  - The inventory plugin P(corral.nspawn.machines#inventory) sets O(nspawn_machine) and the O(nspawn_host) options
    for every declared or discovered container.
author:
  - corral.nspawn contributors (@corral-nspawn)
version_added: 0.1.0
notes:
  - The user on the container host must be root (entering a container's namespaces needs it; polkit cannot
    grant that). For a non-root login, set O(nspawn_host_become) to a command such as V(sudo -n) and allow
    it with a sudoers rule (see the user guide, section "Reaching into containers").
  - Errors name the machine and the host; a stopped container, an unknown machine, an unreachable host and
    a non-root host user each have their own message.
  - C(become) inside the container works with the become plugins that need no password prompt
    (C(su) from root, C(sudo) with NOPASSWD); C(ansible_user) selects the user the command runs as.
options:
  pipelining:
    description:
      - Send modules to the interpreter's stdin instead of copying them first (one exec per module task).
      - On by default for this connection (Ansible's own default is off); a become method that cannot
        pipeline (such as C(su)) turns it off for its tasks.
    type: boolean
    default: true
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: defaults
        key: pipelining
      - section: connection
        key: pipelining
    vars:
      - name: ansible_pipelining
      - name: ansible_nspawn_pipelining
  nspawn_machine:
    description:
      - Name of the container (machine) on the container host. Without O(nspawn_machine), the inventory
        host name.
    type: str
    vars:
      - name: inventory_hostname
      - name: nspawn_machine
      - name: ansible_nspawn_machine
  remote_user:
    description:
      - User inside the container the commands run as (C(systemd-run --uid=)).
    type: str
    default: root
    vars:
      - name: ansible_user
    keyword:
      - name: remote_user
  nspawn_method:
    description:
      - How to enter the container. V(systemd-run) needs a system bus inside the container;
        V(nsenter) enters the namespaces of the container's leader process (no cgroup of its own,
        no unit inside); V(auto) picks V(systemd-run) when the container has a system bus, else V(nsenter).
    type: str
    default: auto
    choices: [auto, systemd-run, nsenter]
    vars:
      - name: nspawn_method
      - name: ansible_nspawn_method
  nspawn_host:
    description:
      - Address of the container host. Unset or empty - the controller is the container host (local mode).
    type: str
    vars:
      - name: nspawn_host
      - name: ansible_nspawn_host
  nspawn_host_user:
    description:
      - SSH user on the container host (see the notes for a non-root user).
    type: str
    vars:
      - name: nspawn_host_user
      - name: ansible_nspawn_host_user
  nspawn_host_port:
    description:
      - SSH port of the container host.
    type: int
    vars:
      - name: nspawn_host_port
      - name: ansible_nspawn_host_port
  nspawn_host_private_key_file:
    description:
      - SSH private key for the container host.
    type: path
    vars:
      - name: nspawn_host_private_key_file
      - name: ansible_nspawn_host_private_key_file
  nspawn_host_become:
    description:
      - Command prefix on the container host that makes the host user root, for example V(sudo -n).
        Must not prompt for a password.
    type: str
    vars:
      - name: nspawn_host_become
      - name: ansible_nspawn_host_become
  nspawn_ssh_common_args:
    description:
      - Extra arguments for the C(ssh) client, as a string (like C(ansible_ssh_common_args)).
    type: str
    default: ''
    vars:
      - name: nspawn_ssh_common_args
      - name: ansible_nspawn_ssh_common_args
  nspawn_ssh_extra_args:
    description:
      - More arguments for the C(ssh) client, as a string (like C(ansible_ssh_extra_args)).
    type: str
    default: ''
    vars:
      - name: nspawn_ssh_extra_args
      - name: ansible_nspawn_ssh_extra_args
  nspawn_ssh_executable:
    description:
      - The C(ssh) client to run.
    type: str
    default: ssh
    vars:
      - name: nspawn_ssh_executable
  nspawn_control_path_dir:
    description:
      - Directory of the SSH master sockets (C(ControlPath=DIR/%C), as P(ansible.builtin.ssh#connection) does, so both
        share one master per host and user). Empty - no multiplexing.
    type: str
    default: ~/.ansible/cp
    vars:
      - name: nspawn_control_path_dir
  nspawn_control_persist:
    description:
      - Seconds an idle SSH master connection stays open.
    type: int
    default: 60
    vars:
      - name: nspawn_control_persist
  timeout:
    description:
      - Seconds to wait for the SSH connection to the container host.
    type: int
    default: 10
    vars:
      - name: ansible_timeout
      - name: nspawn_host_timeout
"""

EXAMPLES = r"""
# inventory: containers as hosts (corral.nspawn.machines sets these for you)
# web.node1:
#   ansible_connection: corral.nspawn.nspawn
#   nspawn_machine: web
#   nspawn_host: 192.0.2.11
#   nspawn_host_user: root

- name: Configure what runs inside the containers
  hosts: nspawn_containers
  gather_facts: false
  tasks:
    - name: A page for the web server
      ansible.builtin.copy:
        dest: /srv/www/index.html
        content: "hello\n"
        mode: "0644"
    - name: Runs as www-data inside the container
      ansible.builtin.command: id -un
      become: true
      become_method: ansible.builtin.su
      become_user: www-data
      changed_when: false
"""

import os
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.corral.nspawn.plugins.plugin_utils import nspawn_exec

display = Display()


class Connection(ConnectionBase):
    """Commands and files in and out of a systemd-nspawn container, locally or through SSH."""

    transport = "corral.nspawn.nspawn"
    has_pipelining = True
    default_user = "root"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._machine = None

    # -- setup
    def _connect(self):
        if not self._connected:
            machine = self.get_option("nspawn_machine")
            user = self.get_option("remote_user") or self.default_user
            try:
                nspawn_exec.check_options(machine, user, self.get_option("nspawn_method"))
            except nspawn_exec.ExecError as exc:
                raise AnsibleError(f"corral.nspawn.nspawn: {exc}") from None
            self._machine = machine
            self._connected = True
            display.vvv(f"NSPAWN machine {machine} on {self._where()}", host=machine)
        return self

    def _where(self) -> str:
        host = self.get_option("nspawn_host")
        if not host:
            return "the local host"
        user = self.get_option("nspawn_host_user")
        return f"host {user + '@' if user else ''}{host}"

    def _argv(self, command) -> list:
        inner = nspawn_exec.host_argv(self._machine, self.get_option("remote_user") or self.default_user,
                                      self.get_option("nspawn_method"), command,
                                      become=self.get_option("nspawn_host_become"))
        host = self.get_option("nspawn_host")
        if not host:
            return inner
        control = self.get_option("nspawn_control_path_dir")
        if control:
            control = os.path.expanduser(control)
            os.makedirs(control, mode=0o700, exist_ok=True)
        return nspawn_exec.ssh_argv(
            host, inner, ssh_executable=self.get_option("nspawn_ssh_executable"),
            user=self.get_option("nspawn_host_user"), port=self.get_option("nspawn_host_port"),
            private_key=self.get_option("nspawn_host_private_key_file"),
            common_args=self.get_option("nspawn_ssh_common_args"),
            extra_args=self.get_option("nspawn_ssh_extra_args"),
            control_dir=control or None, persist=self.get_option("nspawn_control_persist"),
            timeout=self.get_option("timeout"))

    def _run(self, command, stdin=None, stdout=subprocess.PIPE):
        """Run ``command`` inside the container; (rc, stdout bytes, stderr bytes); host-side refusals raise."""
        argv = self._argv(command)
        display.vvvvv(f"NSPAWN EXEC {argv!r}", host=self._machine)
        try:
            proc = subprocess.Popen(argv, stdin=stdin if stdin is not None else subprocess.PIPE,
                                    stdout=stdout, stderr=subprocess.PIPE)
        except OSError as exc:
            raise AnsibleConnectionFailure(f"corral.nspawn.nspawn: cannot run {argv[0]}: {exc}") from None
        return proc

    def _finish(self, proc, in_data=None):
        out, err = proc.communicate(in_data)
        self._raise_for_host(proc.returncode, to_text(err, errors="surrogate_or_replace"))
        return proc.returncode, out or b"", err

    def _raise_for_host(self, rc: int, stderr: str) -> None:
        refused = nspawn_exec.refusal(rc, stderr)
        if refused:
            raise AnsibleConnectionFailure(nspawn_exec.refusal_message(*refused, self._machine, self._where()))
        if self.get_option("nspawn_host") and nspawn_exec.ssh_failed(rc, stderr):
            raise AnsibleConnectionFailure(
                f"corral.nspawn.nspawn: cannot reach the container host of {self._machine!r} "
                f"({self._where()}) over SSH: {stderr.strip()}")

    # -- ConnectionBase API
    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        proc = self._run(nspawn_exec.shell_command(to_text(cmd, errors="surrogate_or_strict")))
        return self._finish(proc, in_data)

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv(f"PUT {in_path} TO {out_path}", host=self._machine)
        if not os.path.isfile(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound(f"file or module does not exist: {in_path}")
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as source:
            proc = self._run(nspawn_exec.put_command(to_text(out_path)), stdin=source)
            rc, _out, err = self._finish(proc)
        if rc != 0:
            raise AnsibleError(f"corral.nspawn.nspawn: failed to put {in_path} to {out_path} in {self._machine!r} "
                               f"(rc={rc}): {to_text(err).strip()}")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv(f"FETCH {in_path} TO {out_path}", host=self._machine)
        partial = to_bytes(out_path, errors="surrogate_or_strict") + b".corral-partial"
        try:
            with open(partial, "wb") as dest:
                proc = self._run(nspawn_exec.fetch_command(to_text(in_path)), stdin=subprocess.DEVNULL, stdout=dest)
                rc, _out, err = self._finish(proc)
            if rc != 0:
                raise AnsibleError(f"corral.nspawn.nspawn: failed to fetch {in_path} from {self._machine!r} "
                                   f"(rc={rc}): {to_text(err).strip()}")
            os.rename(partial, to_bytes(out_path, errors="surrogate_or_strict"))
        finally:
            if os.path.exists(partial):
                os.unlink(partial)

    def close(self):
        # The SSH master (if any) is left to ControlPersist, like ansible.builtin.ssh does.
        self._connected = False
