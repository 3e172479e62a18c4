"""Fleets (issue 23): the jail.hosting Ansible collection run against this machine itself.

`ansible-playbook -c local` runs the example playbook with the jail_host role (binaries, the
directories, /etc/shells, the systemd unit, a base) and two tenants made by the jail_tenant
module: a "mail" jail owning tcp:25 and an "ssh" jail owning tcp:22, each with a service that
its rc starts as root inside. Everything the role and the module write goes to a temporary
directory (config, state, binaries, unit), except the host accounts and the /etc/shells line,
which are compared and restored."""
import importlib.util
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import JAILD, REPO, wait_for
from test_config import TRICKY, TRICKY_ENTRIES

COLLECTIONS = REPO / "contrib" / "ansible"
COLLECTION = COLLECTIONS / "ansible_collections" / "jail" / "hosting"
PLAYBOOK = COLLECTION / "playbooks" / "site.yml"
HOST_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid", "/etc/subgid")
# Stand-ins for an MTA and an sshd that a busybox base has: busybox's httpd, bound by root
# inside on the tenant's own port.
TENANTS = [
    {"name": "jt-mail", "uid": 62100, "ports": "tcp:25", "memory": "64M", "pids": 64,
     "rc": "busybox httpd -p 127.0.0.2:25 -h /var"},
    {"name": "jt-ssh", "uid": 62101, "ports": "tcp:22", "memory": "64M", "pids": 64,
     "rc": "busybox httpd -p 127.0.0.2:22 -h /var"},
]


class Fleet:
    def __init__(self, base, binaries):
        self.base = base
        self.binaries = binaries
        self.vars = {
            "jail_hosts_pattern": "localhost",
            "jail_host_binaries_remote": str(binaries),
            "jail_host_sbin": str(base / "sbin"),
            "jail_host_bin": str(base / "bin"),
            "jail_host_config_dir": str(base / "conf"),
            "jail_host_state_dir": str(base / "state"),
            "jail_host_rootfs_dir": str(base / "state" / "bases"),
            "jail_host_systemd_dir": str(base / "systemd"),
            "jail_host_sshd_config_dir": str(base / "sshd_config.d"),
            "jail_host_sshd_reload": False,
            "jail_host_bases": [{"name": "busybox", "tool": "copy", "from": str(base / "busybox")}],
            "jail_base": "busybox",
            "jail_tenants": TENANTS,
        }
        self.env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_HOME": str(base / "ansible"),
                    "ANSIBLE_LOCAL_TEMP": str(base / "ansible" / "tmp"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3", "ANSIBLE_RETRY_FILES_ENABLED": "0"}
        self.jaild_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "JAIL_CONFIG_DIR": self.vars["jail_host_config_dir"],
                          "JAIL_STATE_DIR": self.vars["jail_host_state_dir"]}

    def play(self, *extra, **overrides):
        variables = {**self.vars, **overrides}
        path = self.base / "vars.json"
        path.write_text(json.dumps(variables))
        result = subprocess.run(["ansible-playbook", "-c", "local", "-i", "localhost,", str(PLAYBOOK),
                                 "-e", f"@{path}", *extra], capture_output=True, text=True, timeout=600,
                                env=self.env, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout)
        assert recap, result.stdout
        return int(recap.group(2)), result.stdout

    def jaild(self, *args):
        return subprocess.run([str(self.base / "sbin" / "jaild"), *args], capture_output=True, text=True, timeout=60,
                              env=self.jaild_env)


def snapshot():
    return {p: pathlib.Path(p).read_bytes() if os.path.exists(p) else None for p in HOST_FILES}


@pytest.fixture
def fleet(installed_jail):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-fleet-", dir="/tmp"))
    os.chmod(base, 0o755)
    shells = pathlib.Path("/etc/shells").read_bytes()
    # The host group of every tenant, which the role makes: there before the snapshot.
    made_group = subprocess.run(["groupadd", "-r", "jail"], capture_output=True).returncode == 0
    before = snapshot()
    f = Fleet(base, pathlib.Path(installed_jail).parent)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "key")], check=True)
    f.vars["jail_tenant_keys"] = [(base / "key.pub").read_text().strip()]
    subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(base / "busybox"), "61000", "Jail fleet base"],
                   check=True)
    try:
        yield f, before
    finally:
        if (base / "sbin" / "jaild").exists():
            for tenant in TENANTS:
                f.jaild("destroy", tenant["name"], "--yes")
        for tenant in TENANTS:
            subprocess.run(["userdel", tenant["name"]], capture_output=True)
            subprocess.run(["groupdel", tenant["name"]], capture_output=True)
        pathlib.Path("/etc/shells").write_bytes(shells)
        if made_group:
            subprocess.run(["groupdel", "jail"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def su(name, script):
    return subprocess.run(["su", "-", name, "-c", script], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def test_playbook_brings_up_two_tenants_then_changes_nothing_then_removes_them(fleet):
    f, before = fleet
    changed, _ = f.play()
    assert changed > 0
    # The role's part: binaries, directories, the shell line, the unit, the base.
    assert os.access(f.base / "sbin" / "jaild", os.X_OK) and os.access(f.base / "bin" / "jail", os.X_OK)
    assert str(f.base / "bin" / "jail") in pathlib.Path("/etc/shells").read_text().split()
    assert (f.base / "systemd" / "jaild@.service").read_text() == (REPO / "contrib/systemd/jaild@.service").read_text()
    assert (f.base / "sshd_config.d" / "jail.conf").read_text() == (REPO / "contrib/sshd/jail.conf").read_text()
    assert (f.base / "state" / "bases" / "busybox" / "etc" / "passwd").exists()
    assert oct((f.base / "state").stat().st_mode & 0o777) == "0o700"
    listed = json.loads(f.jaild("list", "--json").stdout)
    key = f.vars["jail_tenant_keys"][0]
    for tenant in TENANTS:
        assert f.jaild("status", tenant["name"]).returncode == 0
        result = su(tenant["name"], "id -un; cat /etc/issue; hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().splitlines()[:2] == ["work", "Jail fleet base"], result.stdout
        port = int(tenant["ports"].split(":")[1])
        # The rc's service listens on the tenant's own low port, bound by root inside.
        wait_for(lambda: socket.create_connection(("127.0.0.2", port), timeout=2).close() or True, 10,
                 f"{tenant['name']}'s service on {port}")
        # The key, for the host's sshd and for the jail user's own.
        home = pathlib.Path(__import__("pwd").getpwnam(tenant["name"]).pw_dir)
        assert f"restrict,pty,agent-forwarding {key}" in (home / ".ssh" / "authorized_keys").read_text()
        assert tenant["name"] in __import__("grp").getgrnam("jail").gr_mem
        assert key in su(tenant["name"], "cat ~/.ssh/authorized_keys").stdout.decode()
        row = [r for r in listed if r.get("uid") == tenant["uid"]]
        assert row and row[0]["ports"] == tenant["ports"] and row[0].get("rc_status") == 0, listed
    # Owned: the other tenant may not take the port, not even as root inside.
    other = su("jt-ssh", "busybox timeout 3 busybox httpd -f -p 127.0.0.3:25 -h /var; echo status=$?")
    assert b"status=1" in other.stdout, other

    changed, out = f.play()
    assert changed == 0, out

    # A rolling upgrade: a new jaild binary; each supervisor is replaced and adopts its running
    # jail (the same init, the same services), then the tenants are as before.
    inits = {t["name"]: json.loads(f.jaild("list", "--json").stdout) for t in TENANTS}
    before_inits = sorted(r["init_pid"] for r in inits["jt-mail"] if r["uid"] in (62100, 62101))
    newer = f.base / "newer"
    newer.mkdir()
    shutil.copy(f.binaries / "jail", newer / "jail")
    shutil.copy(f.binaries / "jaild", newer / "jaild")
    with open(newer / "jaild", "ab") as binary:
        binary.write(b"\0upgrade")  # another file, the same program
    f.vars["jail_host_binaries_remote"] = str(newer)  # from now on, the new release
    changed, out = f.play()
    assert out.count("=> (item=jt-") >= 2 and "Supervisors of running tenants" in out, out
    after = [r for r in json.loads(f.jaild("list", "--json").stdout) if r["uid"] in (62100, 62101)]
    assert sorted(r["init_pid"] for r in after) == before_inits, (before_inits, after)
    for tenant in TENANTS:
        assert su(tenant["name"], "echo still-here").stdout == b"still-here\n"

    # Check mode with a new limit: reported, not done.
    changed, out = f.play("--check", "--diff", jail_tenants=[{**TENANTS[0], "memory": "96M"}, TENANTS[1]])
    assert changed == 1, out
    assert "memory = 64M" in (f.base / "conf" / "jt-mail.conf").read_text()
    # For real: the config is rewritten and the tenant restarted with it.
    changed, out = f.play(jail_tenants=[{**TENANTS[0], "memory": "96M"}, TENANTS[1]])
    assert changed == 1, out
    assert "memory = 96M" in (f.base / "conf" / "jt-mail.conf").read_text()
    assert f.jaild("status", "jt-mail").returncode == 0

    changed, out = f.play(jail_tenant_state="absent")
    assert changed == 1, out  # the recap counts tasks: the tenants' loop
    assert out.count("changed: [localhost] => (item=jt-") == 2, out
    assert snapshot() == before
    assert not list((f.base / "conf").glob("*.conf"))
    assert sorted(p.name for p in (f.base / "state").iterdir()) == ["bases"]
    for tenant in TENANTS:
        assert f.jaild("status", tenant["name"]).returncode != 0


def test_the_module_fails_with_jaild_s_own_line(fleet):
    f, _ = fleet
    bad = [{"name": "jt-mail", "uid": 62100, "base": "nonexistent-base"}]
    variables = {**f.vars, "jail_tenants": bad}
    path = f.base / "vars.json"
    path.write_text(json.dumps(variables))
    result = subprocess.run(["ansible-playbook", "-c", "local", "-i", "localhost,", str(PLAYBOOK), "-e", f"@{path}"],
                            capture_output=True, text=True, timeout=600, env=f.env, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    message = re.search(r'"msg": "([^"]*)"', result.stdout)
    assert message and "nonexistent-base" in message.group(1), result.stdout[-3000:]


def test_the_collection_passes_ansible_lint():
    with tempfile.TemporaryDirectory(prefix="jail-lint-") as ansible_home:
        result = subprocess.run(["ansible-lint", "--offline", "-p"], cwd=COLLECTION, capture_output=True, text=True,
                                timeout=600, env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
                                                  "ANSIBLE_HOME": ansible_home})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def jail_tenant_module():
    """The module's file imported as Python (its functions, without a playbook)."""
    spec = importlib.util.spec_from_file_location("jail_tenant", COLLECTION / "plugins" / "modules" / "jail_tenant.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ModuleStandIn:
    """What the module's reader uses of an AnsibleModule: run_command and fail_json."""

    def run_command(self, argv, data=None, binary_data=False, environ_update=None):
        result = subprocess.run(argv, input=data, capture_output=True, text=True, timeout=60,
                                env={**os.environ, **(environ_update or {})})
        return result.returncode, result.stdout, result.stderr

    def fail_json(self, **result):
        raise AssertionError(result)


def test_the_module_reads_configs_as_jaild_does_and_rewrites_only_its_keys():
    tenant = jail_tenant_module()
    entries = tenant.read_config(ModuleStandIn(), JAILD, {}, TRICKY)
    assert entries == TRICKY_ENTRIES  # the same reading as test_config's `jaild config`
    assert tenant.config_values(entries)["boot"] == "echo \"quoted = yes\" ; not a comment"
    assert tenant.config_services(entries) == ["/run/a.sock=/srv/a.sock", "/run/b.sock=/srv/b.sock,header=none"]
    # Set one key in place, add one, remove one, replace the services: every other line stays.
    text = TRICKY + "\npids = 64\n"
    entries = tenant.read_config(ModuleStandIn(), JAILD, {}, text)
    wanted = tenant.rewrite_config(text, entries, {"memory": "96M", "ports": "tcp:25", "pids": None, "rc": None},
                                   ["/run/c.sock=/srv/c.sock"])
    lines = wanted.split("\n")
    assert lines[:9] == TRICKY.split("\n")[:9]  # comments, blank lines, boot and hostname, CRs and all
    assert lines[9] == "memory = 96M"
    reread = tenant.read_config(ModuleStandIn(), JAILD, {}, wanted)
    assert [(e["key"], e["value"]) for e in reread] == [
        (e["key"], e["value"]) for e in TRICKY_ENTRIES if e["key"] not in ("memory", "service")
    ][:4] + [("memory", "96M"), ("mount", "/data=/srv/data:ro"), ("ports", "tcp:25"), ("service", "/run/c.sock=/srv/c.sock")]
    # Text jaild cannot read fails the task with jaild's line.
    try:
        tenant.read_config(ModuleStandIn(), JAILD, {}, "uid = 1\nbogus = 2\n")
    except AssertionError as failure:
        assert "standard input:2: unknown key 'bogus'" in str(failure)
    else:
        raise AssertionError("a config with an unknown key was read")
