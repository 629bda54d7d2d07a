# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 9 sections 3 and 4 on a booted test host (prefix "del").

- prune + purge deletes only the root corral built: a machinectl-imported root the fleet adopted
  (together with its hand-written .nspawn file, which is reported) survives (its settings and
  drop-in go, a "root kept" warning says so);
- an empty machine list with prune is refused before any change unless prune_all;
- a running machine named like the old staging name (corral-staging-web) survives an import
  build of image "web" through systemd-importd;
- a secret written in any place of the fleet's arguments never appears in -vvv output, the diff,
  the registered results or the host journal.
"""

import json
import os
import tempfile

import pytest

import harness

TEMPLATE = {"name": "tmpl", "source": "directory", "path": "/srv/corral/images/debian12"}
TAR = "/srv/corral/images/debian12.tar"


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("del1")
    host.prepare()
    return host


def _stopped(name, **kw):
    return dict({"name": name, "state": "stopped", "enabled": False}, **kw)


def _exists(host, path):
    return host.ssh(f"test -e {path}", check=False).returncode == 0


def test_prune_purge_keeps_a_root_corral_did_not_build(host):
    host.ssh("machinectl import-tar " + TAR + " handmade", timeout=300)  # adopted by the fleet below
    host.ssh("mkdir -p /etc/systemd/nspawn && printf '[Exec]\\nBoot=yes\\n' > /etc/systemd/nspawn/handmade.nspawn")  # hand-written settings
    declared = [_stopped("keep", template="tmpl"), _stopped("handmade"), _stopped("built", template="tmpl")]
    adopted = host.run("fleet", {"templates": [TEMPLATE], "machines": declared})
    words = "settings: adopt /etc/systemd/nspawn/handmade.nspawn, hand-written (no corral.nspawn marker)"
    assert adopted["machines"]["handmade"]["changes"][0].startswith(words), adopted["machines"]["handmade"]
    assert any(words in w for w in adopted.get("warnings", [])), adopted.get("warnings")
    assert _exists(host, "/var/lib/machines/.corral/records/built.json")
    assert not _exists(host, "/var/lib/machines/.corral/records/handmade.json")

    args = {"templates": [TEMPLATE], "machines": declared[:1], "prune": True, "purge": True}
    check = host.run("fleet", args, check=True, diff=True)
    assert check["pruned"] == ["built", "handmade"], check
    kept = [w for w in check.get("warnings", []) if "root kept" in w]
    assert len(kept) == 1 and "purge handmade: root kept: /var/lib/machines/handmade" in kept[0], check.get("warnings")

    result = host.run("fleet", args, diff=True)
    assert result["changed"] and result["pruned"] == ["built", "handmade"], result
    assert [w for w in result.get("warnings", []) if "root kept" in w] == kept
    assert _exists(host, "/var/lib/machines/handmade/etc/os-release"), "a root corral did not build was purged"
    assert not _exists(host, "/var/lib/machines/built"), "the root corral built was not purged"
    assert not _exists(host, "/var/lib/machines/.corral/records/built.json")
    gone = host.existing("/etc/systemd/nspawn/handmade.nspawn", "/etc/systemd/system/systemd-nspawn@handmade.service.d",
                         "/etc/systemd/nspawn/built.nspawn")
    assert gone == [], f"settings/drop-in of pruned machines left: {gone}"
    again = host.run("fleet", args)
    assert again["changed"] is False and again["pruned"] == [], again


def test_an_empty_machine_list_with_prune_is_refused_before_any_change(host):
    before = host.fingerprint()
    refused = host.module("fleet", {"templates": [TEMPLATE], "machines": [], "prune": True})
    assert refused.get("failed") and "prune_all=true" in refused["msg"] and "(keep)" in refused["msg"], refused
    harness.assert_same(before, host.fingerprint(), "fleet with an empty machine list and prune")
    assert _exists(host, "/etc/systemd/nspawn/keep.nspawn") and _exists(host, "/var/lib/machines/keep/etc")


def test_a_running_machine_named_like_a_staging_dir_survives_an_image_build(host):
    """Regression: building image web discarded (SIGKILL, rmtree) a live machine named corral-staging-web."""
    other = "corral-staging-web"
    host.ssh(f"machinectl import-tar {TAR} {other} && machinectl start {other}", timeout=300)
    host.ssh(f"timeout 90 sh -c 'until systemctl -M {other} is-system-running --wait; do sleep 1; done'",
             check=False, timeout=120)
    leader = host.ssh(f"machinectl show {other} -p Leader --value").stdout.strip()
    try:
        result = host.run("image", {"name": "web", "source": "tar", "path": TAR, "importer": "machinectl"})
        assert result["created"] and not any("leftovers" in c for c in result["changes"]), result
        state = host.ssh(f"machinectl show {other} -p State -p Leader --value", check=False).stdout.split()
        assert sorted(state) == sorted(["running", leader]), f"{other} was stopped or killed by the build of web: {state}"
        assert _exists(host, f"/var/lib/machines/{other}/etc/os-release"), f"{other}'s root was removed"
        assert _exists(host, "/var/lib/machines/web/etc/os-release")
        assert host.ssh("ls /var/lib/machines/.corral/staging").stdout.split() == []
        imports = host.ssh("ls /var/lib/machines").stdout.split()
        assert not [n for n in imports if n.startswith("corral-import-")], imports
    finally:
        host.ssh(f"machinectl terminate {other}; sleep 2; machinectl remove {other}", check=False, timeout=120)


HASH_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _hash(tag):
    """A well-formed SHA-512 crypt string carrying a unique tag (86 characters after the salt)."""
    body = (tag + HASH_CHARS * 2)[:86]
    return f"$6$del{tag[:8]}$" + body


SECRETS = {
    "machines[].root_password": "ZqMachinePlainZq",
    "machines[].root_password_hash": _hash("ZqMachineHashZq"),
    "defaults.root_password": "ZqDefaultsPlainZq",
    "defaults.root_password_hash": _hash("ZqDefaultsHashZq"),
    "machines[].image.root_password": "ZqImagePlainZq",
    "machines[].image.root_password_hash": _hash("ZqImageHashZq"),
    "defaults.image.root_password": "ZqDefImagePlainZq",
    "templates[].root_password": "ZqTemplatePlainZq",
    "templates[].root_password_hash": _hash("ZqTemplateHashZq"),
    "role corral_fleet_machines[].root_password": "ZqRolePlainZq",
    "role corral_fleet_machines[].image.root_password_hash": _hash("ZqRoleImageHashZq"),
}


def _secret_tasks():
    """One task per place a secret can be written; the accepted ones first, then those refused."""
    s = SECRETS
    base = [_stopped("sa", template="tmpl"), _stopped("sb", template="tmpl")]
    accepted = {"templates": [TEMPLATE], "machines": [
        dict(base[0], root_password=s["machines[].root_password"]),
        dict(base[1], root_password_hash=s["machines[].root_password_hash"])],
        "defaults": {"root_password_hash": s["defaults.root_password_hash"]}}
    accepted_defaults = {"templates": [TEMPLATE], "machines": base[:1],
                         "defaults": {"root_password": s["defaults.root_password"]}}
    refused = {
        "image.root_password": {"templates": [TEMPLATE], "machines": [
            dict(base[0], image={"root_password": s["machines[].image.root_password"]})]},
        "image.root_password_hash": {"templates": [TEMPLATE], "machines": [
            dict(base[0], image={"root_password_hash": s["machines[].image.root_password_hash"]})]},
        "defaults.image": {"templates": [TEMPLATE], "machines": base[:1],
                           "defaults": {"image": {"root_password": s["defaults.image.root_password"]}}},
        "templates.root_password": {"templates": [dict(TEMPLATE, root_password=s["templates[].root_password"])],
                                    "machines": base[:1]},
        "templates.root_password_hash": {"templates": [dict(TEMPLATE, root_password_hash=s[
            "templates[].root_password_hash"])], "machines": base[:1]},
    }
    tasks = [{"name": "accepted", "corral.nspawn.fleet": accepted, "register": "r_accepted", "ignore_errors": True},
             {"name": "accepted defaults", "corral.nspawn.fleet": accepted_defaults, "register": "r_defaults",
              "ignore_errors": True}]
    for index, (name, args) in enumerate(refused.items()):
        tasks.append({"name": f"refused {name}", "corral.nspawn.fleet": args, "register": f"r_refused{index}",
                      "ignore_errors": True})
    return tasks, len(refused)


def _role_task(machines):
    return {"name": "role", "ansible.builtin.include_role": {"name": "corral.nspawn.fleet", "apply": {
        "ignore_errors": True}}, "vars": {"corral_fleet_templates": [TEMPLATE], "corral_fleet_machines": machines}}


def test_secrets_never_reach_vvv_output_diff_results_or_the_journal(host, tmp_path):
    tasks, refused = _secret_tasks()
    role_ok = [_stopped("sr", template="tmpl", root_password=SECRETS["role corral_fleet_machines[].root_password"])]
    role_bad = [_stopped("sr", template="tmpl", image={
        "root_password_hash": SECRETS["role corral_fleet_machines[].image.root_password_hash"]})]
    registers = ["r_accepted", "r_defaults"] + [f"r_refused{i}" for i in range(refused)]
    out = str(tmp_path / "results.json")
    play = [{"hosts": host.name, "gather_facts": False, "tasks": tasks + [
        _role_task(role_ok), _role_task(role_bad),
        {"name": "results", "ansible.builtin.copy": {
            "content": "{{ [" + ", ".join(registers) + "] | to_json }}", "dest": out},
         "delegate_to": "localhost", "check_mode": False, "diff": False}]}]
    since = host.ssh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        book = os.path.join(tmp, "play.yml")
        with open(book, "w", encoding="utf-8") as handle:
            json.dump(play, handle)
        run = host.playbook(book, check=True, diff=True, extra_args=("-vvv",), timeout=1200)
    assert os.path.exists(out), run.stdout[-5000:] + run.stderr[-2000:]
    with open(out, encoding="utf-8") as handle:
        results = json.load(handle)
    assert not results[0].get("failed") and not results[1].get("failed"), results[:2]
    assert results[0]["machines"]["sa"]["changed"] and "diff" in json.dumps(results[0])
    for result in results[2:]:
        msg = result.get("msg", "")
        assert result.get("failed") and ("give it as machines[]" in msg or "templates are never booted" in msg), msg
    journal = host.ssh(f"journalctl --no-pager --since '{since}'").stdout
    assert journal.count("Invoked with") >= len(registers), "the invocations are not in the journal: proves nothing"
    assert "\"--- before" in run.stdout or "--- before" in run.stdout, "no diff was shown: proves nothing"
    assert "ESTABLISH SSH CONNECTION" in run.stdout, "not a -vvv run"
    places = {"stdout (-vvv, diff)": run.stdout, "stderr": run.stderr, "results": json.dumps(results),
              "host journal": journal}
    leaks = [f"{secret_place} in {where}" for secret_place, secret in SECRETS.items()
             for where, text in places.items() if secret in text or secret.rsplit("$", maxsplit=1)[-1][:20] in text]
    assert leaks == [], leaks
    assert host.existing("/var/lib/machines/sa", "/var/lib/machines/sr") == [], "check mode created a root"
