# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reaching into containers: the corral.nspawn.machines inventory and the corral.nspawn.nspawn connection.

One test host (module fixture) gets the example inventory through playbooks/site.yml: the first
play builds the fleet (web, app, db in zone apps, port forward host:8080 -> web:80), the second
play - over the containers, through the inventory plugin and the SSH-chained connection -
writes the web page, starts the web server and writes db's config. Every later test reuses that
host and its containers (machinectl starts them with private users, -U). Local mode is proven by
running ansible on the test host itself (ansible-core and the collection copied there), where the
connection runs systemd-run directly.
"""

import fnmatch
import hashlib
import json
import os
import shutil
import re
import subprocess
import sys
import tempfile

import pytest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "playbooks", "site.yml")
EXAMPLES = os.path.join(ROOT, "examples", "inventory")
HOST = "cxn-a"
SSH_ARGS = " ".join(harness.SSH_OPTS[:8])
# What runs ansible on the test host (local mode): ansible-core and its pure-Python dependencies.
ANSIBLE_PACKAGES = ("ansible", "ansible_core-*", "jinja2*", "markupsafe*", "MarkupSafe*", "yaml", "_yaml",
                    "PyYAML*", "pyyaml*", "packaging*", "resolvelib*")
COLLECTION_PARTS = ("galaxy.yml", "meta", "plugins", "roles", "playbooks")


@pytest.fixture(scope="module")
def host(make_host):
    return make_host(HOST)


@pytest.fixture(scope="module")
def inventory(host, tmp_path_factory):
    """The example inventory directory with the test host as the only container host."""
    directory = tmp_path_factory.mktemp("cxn-inventory")
    shutil.copytree(os.path.join(EXAMPLES, "group_vars"), directory / "group_vars")
    shutil.copy(os.path.join(EXAMPLES, "machines.yml"), directory / "machines.yml")
    data = json.loads(harness._write_inventory([host]))  # pylint: disable=protected-access
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    (directory / "hosts.yml").write_text(json.dumps(data))
    return str(directory)


@pytest.fixture(scope="module")
def site(host, inventory):
    """playbooks/site.yml run once: fleet built, then configured from inside."""
    run = harness.run_playbook(SITE, inventory)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-3000:]
    return run


def playbook(inventory, tasks, hosts="nspawn_containers", extra_vars=None, check=False):
    """A one-play playbook over ``hosts`` with ``tasks``; the run (rc not checked)."""
    path = os.path.join(inventory, "..", f"play-{abs(hash(json.dumps(tasks)))}.yml")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([{"hosts": hosts, "gather_facts": False, "tasks": tasks}], handle)
    return harness.run_playbook(path, inventory, extra_vars, check=check, extra_args=["-v"])


def adhoc(inventory, pattern, module, args="", extra_vars=None, check=False):
    """ansible PATTERN -m MODULE -a ARGS; {host: result} as the tree callback writes them."""
    tree = tempfile.mkdtemp(prefix="cxn-tree-", dir=harness.ensure_dir(os.path.join(harness.STATE_DIR, "cxn")))
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "-i", inventory, pattern, "-m", module]
    if args:
        argv += ["-a", args]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    env = harness.ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
                              ANSIBLE_CALLBACK_TREE_DIR=tree)
    try:
        res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
        found = {host: json.loads(open(os.path.join(tree, host), encoding="utf-8").read()) for host in os.listdir(tree)}
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    assert found, f"no result from ansible (rc={res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return found


def plain(value):
    """ansible-inventory --list marks strings from inventory plugins as unsafe ({"__ansible_unsafe": ...})."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def name(machine):
    return f"{machine}.{HOST}"


# ---------------------------------------------------------------- site.yml: bare host -> serving containers

def test_site_yml_configures_inside_the_containers(host, site):
    recap = site.recap
    assert set(recap) == {HOST, name("web"), name("app"), name("db")}, site.stdout[-3000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    # The page through the port forward, fetched from this machine (outside the host).
    page = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://{host.address}:8080/"],
                          capture_output=True, text=True, check=False)
    assert page.stdout == "<h1>Hello from the web container</h1>\n", page
    # db's config written inside the container: read from the host, through the container's root.
    conf = host.ssh("stat -c '%a %U' /var/lib/machines/db/etc/corral-example/db.conf; "
                    "cat /var/lib/machines/db/etc/corral-example/db.conf").stdout
    assert conf == "640 root\nlisten = 10.88.0.12:5432\nmax_connections = 50\n", conf


def test_site_yml_second_run_changes_nothing(site, inventory):
    run = harness.run_playbook(SITE, inventory)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap
    assert {h: r["changed"] for h, r in run.recap.items()} == dict.fromkeys(run.recap, 0), run.stdout[-4000:]


def test_containers_run_with_private_users(host, site):
    """machinectl start runs systemd-nspawn -U: uid 0 inside is not uid 0 outside."""
    for machine in ("web", "app", "db"):
        leader = host.ssh(f"machinectl show -p Leader --value {machine}").stdout.strip()
        uid_map = host.ssh(f"cat /proc/{leader}/uid_map").stdout.split()
        assert uid_map[0] == "0" and uid_map[1] != "0", (machine, uid_map)


# ---------------------------------------------------------------- inventory plugin

def test_inventory_graph_lists_declared_containers(site, inventory):
    graph = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", inventory,
                            "--graph"], capture_output=True, text=True, env=harness.ansible_env(), check=True).stdout
    for group in ("nspawn_containers", "cxn_a_containers", "zone_apps"):
        block = graph.split(f"@{group}:", 1)[1].split("|--@", 1)[0]
        assert set(re.findall(r"--(\S+)", block)) == {name(m) for m in ("web", "app", "db")}, graph
    assert "@web:\n  |  |--web.cxn-a" in graph and "@db:\n  |  |--db.cxn-a" in graph, graph


def test_inventory_list_discovers_undeclared_running_container(host, site, inventory, tmp_path):
    host.ssh("test -d /var/lib/machines/extra || cp -a /srv/corral/images/debian12 /var/lib/machines/extra; "
             "rm -f /var/lib/machines/extra/etc/machine-id; machinectl start extra")
    source = tmp_path / "inventory"
    shutil.copytree(inventory, source)
    (source / "machines.yml").write_text("plugin: corral.nspawn.machines\nsources: [declared, discovered]\n")
    listed = plain(json.loads(subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", str(source), "--list"],
        capture_output=True, text=True, env=harness.ansible_env(), check=True).stdout))
    assert listed["nspawn_undeclared"]["hosts"] == [name("extra")], listed
    hostvars = listed["_meta"]["hostvars"]
    assert hostvars[name("extra")]["nspawn_source"] == "discovered"
    assert hostvars[name("web")]["nspawn_running"] is True and hostvars[name("web")]["nspawn_source"] == "declared"
    assert hostvars[name("web")]["nspawn_address"] == "10.88.0.10"
    assert hostvars[name("web")]["nspawn_host"] == host.address
    assert hostvars[name("web")]["ansible_connection"] == "corral.nspawn.nspawn"
    got = adhoc(str(source), name("extra"), "ansible.builtin.command", "cat /etc/hostname")
    assert harness.succeeded(got[name("extra")])["stdout"], got


# ---------------------------------------------------------------- connection, remote (SSH-chained)

def test_ping_and_setup(site, inventory):
    pinged = adhoc(inventory, "nspawn_containers", "ansible.builtin.ping")
    assert {h: r.get("ping") for h, r in pinged.items()} == dict.fromkeys(map(name, ("web", "app", "db")), "pong")
    # pipelined by default: a module task is one exec, nothing is put into the container first
    env = harness.ansible_env()
    env.pop("ANSIBLE_PIPELINING", None)  # the plugin's own default (ansible.cfg only sets it for ssh)
    verbose = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "-i", inventory, name("app"),
                              "-m", "ansible.builtin.ping", "-vvv"], capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=300, check=False)
    assert verbose.returncode == 0 and "NSPAWN machine app" in verbose.stdout, verbose.stdout[-3000:]
    assert "PUT " not in verbose.stdout, verbose.stdout[-3000:]
    facts = adhoc(inventory, name("app"), "ansible.builtin.setup", "gather_subset=!all,virtual")[name("app")]
    # facts gathered inside: a guest (Ansible reads the container type as "container" under private users)
    assert harness.succeeded(facts)["ansible_facts"]["ansible_virtualization_role"] == "guest", facts
    assert facts["ansible_facts"]["ansible_virtualization_type"] in ("systemd-nspawn", "container"), facts


def test_copy_and_fetch_binary_file_byte_exact(host, site, inventory, tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(6 * 1024 * 1024) + b"\x00\r\n\xff" * 1000)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    args = f"src={blob} dest=/root/blob.bin mode=0600"
    copied = adhoc(inventory, name("app"), "ansible.builtin.copy", args)[name("app")]
    assert harness.succeeded(copied)["changed"] is True and copied["checksum"]
    inside = host.ssh("sha256sum /var/lib/machines/app/root/blob.bin").stdout.split()[0]
    assert inside == digest
    again = adhoc(inventory, name("app"), "ansible.builtin.copy", args)[name("app")]
    assert harness.succeeded(again)["changed"] is False
    fetched = adhoc(inventory, name("app"), "ansible.builtin.fetch",
                    f"src=/root/blob.bin dest={tmp_path}/back.bin flat=true")[name("app")]
    harness.succeeded(fetched)
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest


def test_template_and_owner_inside_private_users_container(host, site, inventory, tmp_path):
    template = tmp_path / "motd.j2"
    template.write_text("machine {{ nspawn_machine }} on {{ nspawn_container_host }}\n")
    done = adhoc(inventory, name("db"), "ansible.builtin.template",
                 f"src={template} dest=/etc/motd-corral owner=www-data mode=0640")[name("db")]
    assert harness.succeeded(done)["changed"] is True
    inside = adhoc(inventory, name("db"), "ansible.builtin.command", "stat -c '%U %a' /etc/motd-corral")[name("db")]
    assert harness.succeeded(inside)["stdout"] == "www-data 640"
    assert host.ssh("cat /var/lib/machines/db/etc/motd-corral").stdout == f"machine db on {HOST}\n"


def test_ansible_user_inside_the_container(host, site, inventory, tmp_path):
    """ansible_user selects the user inside; files it puts belong to that user inside."""
    harness.succeeded(adhoc(inventory, name("app"), "ansible.builtin.user", "name=appuser shell=/bin/sh")[name("app")])
    (tmp_path / "note").write_text("from the controller\n")
    copied = adhoc(inventory, name("app"), "ansible.builtin.copy", f"src={tmp_path}/note dest=/tmp/appuser-note",
                   extra_vars={"ansible_user": "appuser"})[name("app")]
    harness.succeeded(copied)
    who = adhoc(inventory, name("app"), "ansible.builtin.command", "stat -c %U /tmp/appuser-note")[name("app")]
    assert harness.succeeded(who)["stdout"] == "appuser"


def test_become_user_inside_the_container(site, inventory):
    got = playbook(inventory, [{"ansible.builtin.command": "id -un", "become": True, "become_method": "ansible.builtin.su",
                                "become_flags": "-s /bin/sh", "become_user": "www-data", "register": "r"},
                               {"ansible.builtin.assert": {"that": ["r.stdout == 'www-data'"]}}], hosts=name("web"))
    assert got.rc == 0 and got.recap[name("web")]["failed"] == 0, got.stdout[-3000:]


def test_check_mode_changes_nothing_inside(host, site, inventory):
    got = adhoc(inventory, name("web"), "ansible.builtin.copy", "dest=/srv/www/index.html content=changed", check=True)
    assert harness.succeeded(got[name("web")])["changed"] is True
    page = host.ssh("cat /var/lib/machines/web/srv/www/index.html").stdout
    assert page == "<h1>Hello from the web container</h1>\n"


def test_failing_task_reports_rc_and_stderr(site, inventory):
    # (the tree callback writes the module's result; Ansible's own failed flag is not in it)
    got = adhoc(inventory, name("web"), "ansible.builtin.shell", "echo to-stderr >&2; exit 7")[name("web")]
    assert got["rc"] == 7 and got["stderr"] == "to-stderr" and got["msg"] == "non-zero return code", got
    raw = adhoc(inventory, name("web"), "ansible.builtin.raw", "echo raw-err >&2; exit 3")[name("web")]
    assert raw["rc"] == 3 and "raw-err" in raw["stderr"], raw
    run = playbook(inventory, [{"ansible.builtin.shell": "echo play-err >&2; exit 7"}], hosts=name("web"))
    assert run.rc == 2 and run.recap[name("web")]["failed"] == 1 and "play-err" in run.stdout, run.stdout[-3000:]


def test_stopped_and_unknown_containers_are_named_in_the_error(host, site, inventory):
    host.ssh("test -d /var/lib/machines/halted || cp -a /srv/corral/images/debian12 /var/lib/machines/halted")
    got = adhoc(inventory, name("web"), "ansible.builtin.ping", extra_vars={"nspawn_machine": "halted"})[name("web")]
    assert got.get("unreachable") is True, got
    assert "container 'halted' on host" in got["msg"] and "exists but is not running" in got["msg"], got
    got = adhoc(inventory, name("web"), "ansible.builtin.ping", extra_vars={"nspawn_machine": "nosuch"})[name("web")]
    assert got.get("unreachable") is True and "no container 'nosuch' on host" in got["msg"], got


def test_unreachable_host_and_non_root_host_user(host, site, inventory):
    got = adhoc(inventory, name("web"), "ansible.builtin.ping",
                extra_vars={"nspawn_host": "198.18.255.254", "nspawn_host_timeout": 2})[name("web")]
    assert got.get("unreachable") is True and "cannot reach the container host of 'web'" in got["msg"], got
    key = open(harness.ssh_key() + ".pub", encoding="utf-8").read()
    host.ssh("id deploy >/dev/null 2>&1 || useradd -m -s /bin/sh deploy; install -d -o deploy -m 700 ~deploy/.ssh; "
             f"printf '%s' {harness.shlex_quote(key)} > ~deploy/.ssh/authorized_keys; chown deploy ~deploy/.ssh/authorized_keys")
    got = adhoc(inventory, name("web"), "ansible.builtin.ping", extra_vars={"nspawn_host_user": "deploy"})[name("web")]
    assert got.get("unreachable") is True and "the host user 'deploy'" in got["msg"] and "is not root" in got["msg"], got


def test_nsenter_method(host, site, inventory):
    got = adhoc(inventory, name("app"), "ansible.builtin.command", "cat /etc/hostname",
                extra_vars={"nspawn_method": "nsenter"})[name("app")]
    assert harness.succeeded(got)["stdout"] == "app", got


# ---------------------------------------------------------------- connection, local mode (ansible on the host)

def _install_ansible_on(host) -> str:
    """ansible-core and this collection copied to the test host; the python3 command line to run it."""
    import ansible  # pylint: disable=import-outside-toplevel
    site_packages = os.path.dirname(os.path.dirname(ansible.__file__))
    packages = [p for pattern in ANSIBLE_PACKAGES for p in sorted(os.listdir(site_packages)) if fnmatch.fnmatch(p, pattern)]
    pack = subprocess.run(["tar", "-C", site_packages, "-cf", "-", "--exclude=__pycache__", *packages],
                          capture_output=True, check=True).stdout
    coll = subprocess.run(["tar", "-C", ROOT, "-cf", "-", "--exclude=__pycache__", *COLLECTION_PARTS],
                          capture_output=True, check=True).stdout
    for data, dest in ((pack, "/opt/corral-ansible/lib"),
                       (coll, "/opt/corral-ansible/collections/ansible_collections/corral/nspawn")):
        res = subprocess.run(["ssh", *harness.SSH_OPTS, "-i", harness.ssh_key(), f"root@{host.address}",
                              f"mkdir -p {dest} && tar -C {dest} -xf -"], input=data, capture_output=True, check=False)
        assert res.returncode == 0, res.stderr
    return ("PYTHONPATH=/opt/corral-ansible/lib ANSIBLE_COLLECTIONS_PATH=/opt/corral-ansible/collections "
            "ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_PIPELINING=True python3 -m ansible")


def test_local_mode_on_the_container_host(host, site):
    """On the container host itself (controller = host): systemd-run runs directly, no SSH."""
    ansible = _install_ansible_on(host)
    host.ssh("mkdir -p /opt/corral-ansible/inv && cat > /opt/corral-ansible/inv/hosts.yml <<'EOF'\n"
             "all:\n  children:\n    nspawn_hosts:\n      hosts:\n        here:\n"
             "          ansible_connection: local\n          ansible_python_interpreter: /usr/bin/python3\n"
             "EOF\nprintf 'plugin: corral.nspawn.machines\\nsources: [discovered]\\n' > /opt/corral-ansible/inv/machines.yml\n"
             "head -c 3000000 /dev/urandom > /root/local-blob")
    run = host.ssh(f"{ansible} adhoc -i /opt/corral-ansible/inv web.here -m ansible.builtin.copy "
                   "-a 'src=/root/local-blob dest=/root/local-blob' -vvv", check=False, timeout=300)
    assert run.returncode == 0 and "CHANGED" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    # -vvv shows the exec: no ssh in local mode, the host script runs systemd-run directly
    assert "NSPAWN machine web on the local host" in run.stdout, run.stdout[-3000:]
    same = host.ssh("sha256sum /root/local-blob /var/lib/machines/web/root/local-blob | awk '{print $1}' | uniq | wc -l")
    assert same.stdout.strip() == "1"
    run = host.ssh(f"{ansible} adhoc -i /opt/corral-ansible/inv 'nspawn_containers:!*extra*' -m ansible.builtin.ping",
                   check=False, timeout=300)
    assert run.returncode == 0 and run.stdout.count("SUCCESS") == 3, run.stdout[-3000:] + run.stderr[-3000:]
