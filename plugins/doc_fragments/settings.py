# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options of a .nspawn settings file (modules settings and fleet).

    Mirrors plugins/module_utils/schema.py TABLE; tests/unit/plugins/module_utils/test_schema.py
    checks that both agree.
    """

    DOCUMENTATION = r"""
options:
  boot:
    description:
    - C(Boot=) in C([Exec]).
    - Search for an init program in the container and run it as PID 1 (C(--boot)). The C(systemd-nspawn@.service)
      template already boots; may not be combined with O(process_two).
    type: bool
  ephemeral:
    description:
    - C(Ephemeral=) in C([Exec]), systemd 240 or later.
    - Run the container on a temporary snapshot of its file system, removed when it stops (C(--ephemeral)).
    type: bool
  process_two:
    description:
    - C(ProcessTwo=) in C([Exec]), systemd 229 or later.
    - Run the command given in O(parameters) as PID 2 under a stub init (C(--as-pid2)); may not be combined with
      O(boot).
    type: bool
  parameters:
    description:
    - C(Parameters=) in C([Exec]).
    - The command line to run, or with O(boot) the arguments passed to init. Items containing spaces are quoted
      for systemd.
    type: list
    elements: str
  environment:
    description:
    - C(Environment=) in C([Exec]).
    - 'Environment variables of the container''s main process (C(--setenv)). A mapping V(NAME: value) or a list
      of V(NAME=VALUE); a value may contain spaces.'
    type: raw
  user:
    description:
    - C(User=) in C([Exec]).
    - UNIX user name (or UID) the main process runs as (C(--user)).
    type: str
  working_directory:
    description:
    - C(WorkingDirectory=) in C([Exec]), systemd 229 or later.
    - Working directory of the main process, an absolute path inside the container (C(--chdir)).
    type: str
  pivot_root:
    description:
    - C(PivotRoot=) in C([Exec]), systemd 233 or later.
    - 'Directory to pivot to V(/) inside the container: V(PATH) or V(PATH:PATH), absolute paths inside the container
      (C(--pivot-root)).'
    type: str
  capability:
    description:
    - C(Capability=) in C([Exec]).
    - Capabilities given on top of the default set, names like V(CAP_NET_ADMIN) or V(all) (C(--capability)). Privileged.
    type: list
    elements: str
  drop_capability:
    description:
    - C(DropCapability=) in C([Exec]).
    - Capabilities dropped from the default set, names like V(CAP_AUDIT_CONTROL) or V(all) (C(--drop-capability)).
    type: list
    elements: str
  ambient_capability:
    description:
    - C(AmbientCapability=) in C([Exec]), systemd 248 or later.
    - Capabilities passed to the main process as ambient capabilities (C(--ambient-capability)); V(all) is not allowed.
      Privileged.
    type: list
    elements: str
  no_new_privileges:
    description:
    - C(NoNewPrivileges=) in C([Exec]), systemd 239 or later.
    - Set the C(PR_SET_NO_NEW_PRIVS) flag for the container payload (C(--no-new-privileges)).
    type: bool
  kill_signal:
    description:
    - C(KillSignal=) in C([Exec]), systemd 230 or later.
    - Signal sent to the container's PID 1 to shut it down, like V(SIGTERM) or V(SIGRTMIN+3).
    type: str
  personality:
    description:
    - C(Personality=) in C([Exec]).
    - Architecture reported by C(uname) in the container (C(--personality)).
    type: str
    choices:
    - x86
    - x86-64
  machine_id:
    description:
    - C(MachineID=) in C([Exec]).
    - 'Machine ID passed to the container: 32 hex digits or a UUID (C(--uuid)). Privileged.'
    type: str
  private_users:
    description:
    - C(PrivateUsers=) in C([Exec]), systemd 230 or later.
    - 'User namespacing (C(--private-users)): a boolean, V(pick), V(identity), V(managed), a base UID or V(UID:RANGE).
      Privileged.'
    type: raw
  notify_ready:
    description:
    - C(NotifyReady=) in C([Exec]), systemd 231 or later.
    - Wait for the container's init to report readiness (C(--notify-ready)).
    type: bool
  system_call_filter:
    description:
    - C(SystemCallFilter=) in C([Exec]), systemd 235 or later.
    - 'System call filter: names or V(@groups), a V(~) prefix denies (C(--system-call-filter)). Privileged.'
    type: list
    elements: str
  limit_cpu:
    description:
    - C(LimitCPU=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_CPU) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_fsize:
    description:
    - C(LimitFSIZE=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_FSIZE) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_data:
    description:
    - C(LimitDATA=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_DATA) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_stack:
    description:
    - C(LimitSTACK=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_STACK) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_core:
    description:
    - C(LimitCORE=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_CORE) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_rss:
    description:
    - C(LimitRSS=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_RSS) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_nofile:
    description:
    - C(LimitNOFILE=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_NOFILE) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_as:
    description:
    - C(LimitAS=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_AS) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd allows
      one) or V(infinity).'
    type: raw
  limit_nproc:
    description:
    - C(LimitNPROC=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_NPROC) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_memlock:
    description:
    - C(LimitMEMLOCK=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_MEMLOCK) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_locks:
    description:
    - C(LimitLOCKS=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_LOCKS) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_sigpending:
    description:
    - C(LimitSIGPENDING=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_SIGPENDING) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_msgqueue:
    description:
    - C(LimitMSGQUEUE=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_MSGQUEUE) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_nice:
    description:
    - C(LimitNICE=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_NICE) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_rtprio:
    description:
    - C(LimitRTPRIO=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_RTPRIO) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  limit_rttime:
    description:
    - C(LimitRTTIME=) in C([Exec]), systemd 239 or later.
    - 'Resource limit C(RLIMIT_RTTIME) (C(--rlimit)): V(LIMIT) or V(SOFT:HARD), numbers (with a unit where systemd
      allows one) or V(infinity).'
    type: raw
  oom_score_adjust:
    description:
    - C(OOMScoreAdjust=) in C([Exec]), systemd 239 or later.
    - OOM score adjustment of the container, -1000..1000 (C(--oom-score-adjust)).
    type: int
  cpu_affinity:
    description:
    - C(CPUAffinity=) in C([Exec]), systemd 239 or later.
    - CPU affinity, CPU numbers and ranges like V(0-3,6), or V(numa) (C(--cpu-affinity)).
    type: str
  hostname:
    description:
    - C(Hostname=) in C([Exec]), systemd 239 or later.
    - Kernel hostname of the container (C(--hostname)).
    type: str
  resolv_conf:
    description:
    - C(ResolvConf=) in C([Exec]), systemd 239 or later.
    - How C(/etc/resolv.conf) in the container is handled (C(--resolv-conf)).
    type: str
    choices:
    - 'off'
    - copy-host
    - copy-static
    - copy-uplink
    - copy-stub
    - replace-host
    - replace-static
    - replace-uplink
    - replace-stub
    - bind-host
    - bind-static
    - bind-uplink
    - bind-stub
    - delete
    - auto
  timezone:
    description:
    - C(Timezone=) in C([Exec]), systemd 239 or later.
    - How C(/etc/localtime) in the container is handled (C(--timezone)).
    type: str
    choices:
    - 'off'
    - copy
    - bind
    - symlink
    - delete
    - auto
  link_journal:
    description:
    - C(LinkJournal=) in C([Exec]), systemd 239 or later.
    - How the host and container journals are linked (C(--link-journal)).
    type: str
    choices:
    - 'no'
    - host
    - try-host
    - guest
    - try-guest
    - auto
  suppress_sync:
    description:
    - C(SuppressSync=) in C([Exec]), systemd 250 or later.
    - Suppress C(sync()) and friends in the container payload (C(--suppress-sync)).
    type: bool
  read_only:
    description:
    - C(ReadOnly=) in C([Files]).
    - Run the container with a read-only root file system (C(--read-only)); not together with O(volatile).
    type: bool
  volatile:
    description:
    - C(Volatile=) in C([Files]).
    - 'Volatile mode (C(--volatile)): a boolean, V(state) or V(overlay).'
    type: raw
  bind:
    description:
    - C(Bind=) in C([Files]).
    - Bind mounts from the host, each V(SOURCE[:DEST[:OPTIONS]]) (C(--bind)). SOURCE is absolute (or V(+PATH) relative
      to the container root), DEST absolute, OPTIONS a comma list of V(rbind), V(norbind), V(idmap), V(noidmap),
      V(rootidmap), V(owneridmap). Escape a colon inside a path as V(\\:). Privileged.
    type: list
    elements: str
  bind_read_only:
    description:
    - C(BindReadOnly=) in C([Files]).
    - Read-only bind mounts, same form as O(bind) (C(--bind-ro)). Privileged.
    type: list
    elements: str
  bind_user:
    description:
    - C(BindUser=) in C([Files]), systemd 249 or later.
    - Host users bound into the container (C(--bind-user)). Privileged.
    type: list
    elements: str
  temporary_file_system:
    description:
    - C(TemporaryFileSystem=) in C([Files]).
    - tmpfs mounts, each V(PATH[:OPTIONS]) with an absolute PATH, e.g. V(/tmp:mode=1777) (C(--tmpfs)). Privileged.
    type: list
    elements: str
  inaccessible:
    description:
    - C(Inaccessible=) in C([Files]), systemd 242 or later.
    - Absolute paths inside the container that are made inaccessible (C(--inaccessible)). Privileged.
    type: list
    elements: str
  overlay:
    description:
    - C(Overlay=) in C([Files]), systemd 233 or later.
    - Overlay mounts, each V(LOWER[:LOWER...]:UPPER:DEST) (C(--overlay)). Privileged.
    type: list
    elements: str
  overlay_read_only:
    description:
    - C(OverlayReadOnly=) in C([Files]), systemd 233 or later.
    - Read-only overlay mounts, same form as O(overlay) (C(--overlay-ro)). Privileged.
    type: list
    elements: str
  private_users_ownership:
    description:
    - C(PrivateUsersOwnership=) in C([Files]), systemd 249 or later.
    - How file ownership is adjusted to the user namespace (C(--private-users-ownership)). Privileged.
    type: str
    choices:
    - 'off'
    - chown
    - map
    - foreign
    - auto
  private_users_chown:
    description:
    - C(PrivateUsersChown=) in C([Files]), systemd 230 or later.
    - Deprecated spelling of O(private_users_ownership=chown) (C(PrivateUsersChown=)); not together with O(private_users_ownership).
      Privileged.
    type: bool
  private_network:
    description:
    - C(Private=) in C([Network]).
    - Run the container in its own network namespace (C(Private=), C(--private-network)). Implied by the other network
      options. Privileged.
    type: bool
  virtual_ethernet:
    description:
    - C(VirtualEthernet=) in C([Network]).
    - Create a veth link between host and container (C(--network-veth)); the C(systemd-nspawn@.service) template
      does this by default. Privileged.
    type: bool
  virtual_ethernet_extra:
    description:
    - C(VirtualEthernetExtra=) in C([Network]), systemd 228 or later.
    - Additional veth links, each V(HOSTIF[:CONTAINERIF]) (C(--network-veth-extra)). Privileged.
    type: list
    elements: str
  interface:
    description:
    - C(Interface=) in C([Network]).
    - Host interfaces moved into the container, each V(HOSTIF[:CONTAINERIF]) (C(--network-interface)). Privileged.
    type: list
    elements: str
  macvlan:
    description:
    - C(MACVLAN=) in C([Network]).
    - Host interfaces to create a MACVLAN interface on for the container, each V(HOSTIF[:CONTAINERIF]) (C(--network-macvlan)).
      Privileged.
    type: list
    elements: str
  ipvlan:
    description:
    - C(IPVLAN=) in C([Network]).
    - Host interfaces to create an IPVLAN interface on for the container, each V(HOSTIF[:CONTAINERIF]) (C(--network-ipvlan)).
      Privileged.
    type: list
    elements: str
  bridge:
    description:
    - C(Bridge=) in C([Network]).
    - Host bridge the container's veth is added to (C(--network-bridge)); not together with O(zone). Privileged.
    type: str
  zone:
    description:
    - C(Zone=) in C([Network]), systemd 230 or later.
    - 'Network zone: the veth joins the automatic bridge C(vz-ZONE) (C(--network-zone)); at most 12 characters;
      not together with O(bridge). Privileged.'
    type: str
  port:
    description:
    - C(Port=) in C([Network]).
    - Port forwards from the host, each V([tcp|udp:]HOSTPORT[:CONTAINERPORT]) (C(--port)). Needs private networking.
      Privileged.
    type: list
    elements: str
  extra:
    description:
    - 'Keys newer than this collection''s catalogue as V({Section: {Key: value}}) with Section one of V(Exec), V(Files),
      V(Network); a list value repeats the key. They are written as given with a warning. A catalogue key must be
      set through its option, and a key close to a known one fails with a suggestion.'
    type: dict
"""
