"""Config files (docs/config.md): `jaild --config FILE` and `jaild start NAME` read them, flags on
the command line win; `jaild config NAME|FILE` prints the entries as jaild reads them, the one
reader that the Ansible module reads through too (test_fleet.py checks the module's side)."""
import json
import os
import pathlib
import secrets
import subprocess

from conftest import JAILD, UID_A, Jail

# Comments only at a line's start (`#` or `;`, indented or not), a `#` and a `;` inside values,
# quotes kept, `=` inside a value, no spaces around `=`, repeated keys, blank lines, CRLF lines.
TRICKY = ("# the test jail\n"
          "; also a comment\n"
          "   # an indented comment\n"
          "\n"
          "uid = 61000\n"
          "boot = echo a#b\n"
          "boot = echo \"quoted = yes\" ; not a comment\r\n"
          "hostname=tricky\r\n"
          "\t\n"
          "memory = 64M   \n"
          "service = /run/a.sock=/srv/a.sock\n"
          "service = /run/b.sock=/srv/b.sock,header=none\n"
          "mount = /data=/srv/data:ro")
TRICKY_ENTRIES = [
    {"line": 5, "key": "uid", "value": "61000"},
    {"line": 6, "key": "boot", "value": "echo a#b"},
    {"line": 7, "key": "boot", "value": "echo \"quoted = yes\" ; not a comment"},
    {"line": 8, "key": "hostname", "value": "tricky"},
    {"line": 10, "key": "memory", "value": "64M"},
    {"line": 11, "key": "service", "value": "/run/a.sock=/srv/a.sock"},
    {"line": 12, "key": "service", "value": "/run/b.sock=/srv/b.sock,header=none"},
    {"line": 13, "key": "mount", "value": "/data=/srv/data:ro"},
]


def jaild(*args, **kwargs):
    return subprocess.run([JAILD, *args], capture_output=True, text=True, timeout=60, **kwargs)


def test_jaild_config_prints_the_entries_as_jaild_reads_them(tmp_path):
    path = tmp_path / "tricky.conf"
    path.write_bytes(TRICKY.encode())
    as_json = jaild("config", str(path), "--json")
    assert as_json.returncode == 0 and as_json.stderr == "", as_json
    assert json.loads(as_json.stdout) == TRICKY_ENTRIES
    text = jaild("config", str(path))
    assert text.stdout == "".join(f"{e['key']} = {e['value']}\n" for e in TRICKY_ENTRIES), text
    # Standard input, and a NAME in the config directory, read the same.
    assert jaild("config", "-", "--json", input=TRICKY).stdout == as_json.stdout
    (tmp_path / "named.conf").write_bytes(TRICKY.encode())
    named = jaild("config", "named", "--json", env={"JAIL_CONFIG_DIR": str(tmp_path)})
    assert named.stdout == as_json.stdout, named
    # What is printed is a config again, read the same.
    assert [(e["key"], e["value"]) for e in json.loads(jaild("config", "-", "--json", input=text.stdout).stdout)] \
        == [(e["key"], e["value"]) for e in TRICKY_ENTRIES]
    # Every value checked as a start checks it.
    checked = jaild("config", str(path), "--check", "--json")
    assert checked.returncode == 0 and checked.stdout == as_json.stdout, checked


def test_jaild_config_refuses_what_a_start_refuses_with_the_line(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("uid = 61000\n# fine so far\nbogus = 1\n")
    result = jaild("config", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.split(" (known")[0] == f"jaild: {path}:3: unknown key 'bogus'", result.stderr
    path.write_text("uid = 61000\nroot\n")
    result = jaild("config", str(path), "--json")
    assert (result.returncode, result.stderr) == (1, f"jaild: {path}:2: expected 'key = value', got 'root'\n")
    # A value only a start's parser refuses: printed as it is, refused with --check.
    path.write_text("uid = 61000\npids = many\n")
    assert jaild("config", str(path)).stdout == "uid = 61000\npids = many\n"
    result = jaild("config", str(path), "--check")
    assert result.returncode == 1 and result.stderr.startswith(f"jaild: {path}:2: ") and result.stderr.count("\n") == 1, \
        result.stderr
    missing = jaild("config", str(tmp_path / "missing.conf"))
    assert (missing.returncode, missing.stderr) == (1, f"jaild: cannot read config {tmp_path}/missing.conf: "
                                                       "No such file or directory\n")
    assert jaild("config", ".hidden").returncode == 2


def test_config_file_and_command_line_override(rootfs_a, tmp_path):
    config = tmp_path / "jail.conf"
    config.write_text(f"# the test jail\nuid = {UID_A}\nroot = {rootfs_a}\nhostname = from-file\n"
                      "boot = true   # a boot command\nrlimit = nofile=100\n")
    result = subprocess.run([JAILD, "--config", str(config), "--hostname", "from-flag"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    jail = Jail(rootfs_a, UID_A)
    jail.supervisor = int(open(jail.pidfile).read())
    try:
        assert jail.run("hostname; ulimit -n").stdout == b"from-flag\n100\n"
    finally:
        jail.stop()
    config.write_text(f"uid = {UID_A}\nroot = {rootfs_a}\npids = many\n")
    result = subprocess.run([JAILD, "--config", str(config)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith(f"jaild: {config}:3: ") and result.stderr.count("\n") == 1, result.stderr
    config.write_text(f"uid = {UID_A}\nbogus = 1\n")
    result = subprocess.run([JAILD, "--config", str(config)], capture_output=True, text=True)
    assert (result.returncode, result.stderr.split(" (known")[0]) == (1, f"jaild: {config}:2: unknown key 'bogus'")


def test_start_by_name_reads_etc_jail(rootfs_a):
    name = "jailtest-" + secrets.token_hex(4)
    made_dir = not os.path.isdir("/etc/jail")
    os.makedirs("/etc/jail", exist_ok=True)
    path = pathlib.Path("/etc/jail") / f"{name}.conf"
    path.write_text(f"uid = {UID_A}\nroot = {rootfs_a}\nhostname = {name}\n")
    jail = Jail(rootfs_a, UID_A)
    try:
        result = subprocess.run([JAILD, "start", name], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        jail.supervisor = int(open(jail.pidfile).read())
        assert jail.run("hostname").stdout == f"{name}\n".encode()
    finally:
        jail.stop()
        path.unlink()
        if made_dir:
            os.rmdir("/etc/jail")
    missing = subprocess.run([JAILD, "start", "no-such-jail-" + name], capture_output=True, text=True)
    assert missing.returncode == 1 and "cannot read config /etc/jail/no-such-jail-" in missing.stderr
